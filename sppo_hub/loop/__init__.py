"""The SPPO loop (Algorithm 1 of Wu et al., 2024): one `RunConfig` in, a resumable run that publishes every iteration.

Modules, in the order a run meets them:
- `config`: `RunConfig` and its sections (the recipe's schema); `recipe`: YAML recipes and `key=value` overrides.
- `preflight`: every check that is cheap before any model loads (`sppo-hub run` calls it first).
- `run`: `run_from_config` (local Hub, endpoint check) and `algorithm_1`, the loop over the stages.
- `stages/`: one module per stage (setup, generate, judge, data, publish, train, compare, evaluate) and
  `stages.context`: what every stage reads (`RunContext`) and `run_stage`.
- `manifest`: the run manifest (finished stages and their artifacts); `resume`: which recipe changes a resume takes.
- `hooks`: evaluation hooks run after each iteration; `ranks`: who does what under `torchrun` / `accelerate launch`.
"""

from __future__ import annotations

from ..io.lazy_api import lazy_api

# name -> the module that defines it
_API = {
    "DataConfig": ".config",
    "EvaluationConfig": ".config",
    "ModelConfig": ".config",
    "PromptsConfig": ".config",
    "PublishConfig": ".config",
    "RunConfig": ".config",
    "TrainingConfig": ".config",
    "load_recipe": ".recipe",
    "parse_overrides": ".recipe",
    "save_recipe": ".recipe",
    "SPPORun": ".run",
    "algorithm_1": ".run",
    "run_from_config": ".run",
    "IterationContext": ".hooks",
    "register_eval_hook": ".hooks",
    "RunManifest": ".manifest",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_api(__name__, _API, globals())
