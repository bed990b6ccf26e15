"""sppo-hub: Hub-native Self-Play Preference Optimization.

The package is laid out like one SPPO iteration plus the Hub; each folder is one part, and imports only go down
this list (a package imports from the layers below it, never from one above; `tests/test_architecture.py` and
the `[tool.importlinter]` contracts in pyproject.toml fail on a climb or a cycle):

    cli.py, commands/         the `sppo-hub` command line: argument parsing over the Python API
    loop/                     Algorithm 1: config + recipe, preflight, the stages, manifest + resume, hooks, ranks
    train/ | space/ | evaluation/ | testing/
                              what a stage calls: the TRL trainer, the Gradio Space, benchmarks, offline test models
    equilibrium/              Nash-equilibrium options (exploration, reference mixing, iterate averaging)
    judges/ | hub/            pairwise judges; publishing, cards, endpoints and the local Hub server
    generation/               K responses per prompt (transformers, vLLM, a mixture of iterates)
    core/ | io/               the math (preference, losses, datasets); prompts, sharding + the Ray executor, console

`a | b`: the same layer, and neither imports the other.

The public Python API is the names below (`from sppo_hub import RunConfig, run_from_config`); each subpackage's
`__init__` lists its own. Names are imported on first use, so `import sppo_hub` stays cheap.
"""

from __future__ import annotations

from .io.lazy_api import lazy_api

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    # the loop
    "RunConfig": ".loop.config",
    "ModelConfig": ".loop.config",
    "PromptsConfig": ".loop.config",
    "DataConfig": ".loop.config",
    "TrainingConfig": ".loop.config",
    "PublishConfig": ".loop.config",
    "EvaluationConfig": ".loop.config",
    "load_recipe": ".loop.recipe",
    "save_recipe": ".loop.recipe",
    "run_from_config": ".loop.run",
    "SPPORun": ".loop.run",
    "register_eval_hook": ".loop.hooks",
    # what the stages call
    "SamplingConfig": ".generation.base",
    "generate_responses": ".generation.responses",
    "make_generator": ".generation.factory",
    "JudgeConfig": ".judges.base",
    "PairwiseJudge": ".judges.base",
    "load_judge": ".judges.base",
    "judge_dataset": ".judges.stage",
    "build_iteration_datasets": ".core.data",
    "EquilibriumConfig": ".equilibrium.options",
    "SPPOConfig": ".train.config",
    "SPPOTrainer": ".train.trainer",
    "train_policy": ".train.trainer",
    "HubPublisher": ".hub.publish",
    "start_local_hub": ".hub.server",
    "use_endpoint": ".hub.endpoint",
    "EvalConfig": ".evaluation.results",
    "evaluate_iteration": ".evaluation.results",
    "SpaceConfig": ".space.config",
    "RayOptions": ".io.ray_executor",
}
__all__ = ["__version__", *sorted(_API)]

__getattr__, __dir__ = lazy_api(__name__, _API, globals())
