"""Evaluation hooks of an SPPO run: what runs after each iteration is published.

A hook is `fn(context: IterationContext, **args) -> dict` (JSON-serialisable metrics, recorded in the
run manifest). Recipes name hooks in `evaluation.hooks`: a registered name (`benchmarks`: AlpacaEval /
MT-Bench / lm-eval through `sppo_hub.evaluation`), 'package.module:function' or 'path/to/file.py:function'.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig



@dataclass
class IterationContext:
    """What an evaluation hook gets after iteration t is published."""

    iteration: int
    config: RunConfig
    run_dir: Path
    model_path: str  # local folder of pi_t (a full checkpoint)
    model_repo: str | None = None  # Hub repo of pi_t, if published
    model_revision: str | None = None  # its commit sha
    data_repo: str | None = None
    endpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


EvalHook = Callable[..., dict]
EVAL_HOOKS: dict[str, EvalHook] = {}


def register_eval_hook(name: str) -> Callable[[EvalHook], EvalHook]:
    """Decorator: make `fn(context: IterationContext, **args) -> dict of metrics` usable by name in recipes."""

    def deco(fn: EvalHook) -> EvalHook:
        EVAL_HOOKS[name] = fn
        return fn

    return deco


def resolve_eval_hook(name: str) -> EvalHook:
    """A registered hook name, 'package.module:function', or 'path/to/file.py:function'."""
    if ":" in name:
        module, _, attr = name.rpartition(":")
        try:
            if module.endswith(".py"):
                import importlib.util

                spec = importlib.util.spec_from_file_location(f"_sppo_hub_hook_{Path(module).stem}", module)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
            else:
                mod = importlib.import_module(module)
            return getattr(mod, attr)
        except (ImportError, AttributeError, FileNotFoundError) as err:
            raise ValueError(f"evaluation.hooks name={name!r} cannot be loaded ({err}); use 'module:function'.") from err
    if name not in EVAL_HOOKS:
        known = ", ".join(sorted(EVAL_HOOKS))
        raise ValueError(f"evaluation.hooks name={name!r} is not a registered hook ({known}); or use 'module:function'.")
    return EVAL_HOOKS[name]


@register_eval_hook("benchmarks")
def benchmarks_hook(context: IterationContext, **eval_config) -> dict:
    """AlpacaEval / MT-Bench / lm-eval on pi_t via `sppo_hub.evaluation` (args: `EvalConfig` fields);
    results go into pi_t's model card when it was published."""
    from ..evaluation import EvalConfig, evaluate_iteration

    config = EvalConfig(**{"out_dir": str(context.run_dir / "eval"), **eval_config})
    return evaluate_iteration(context.model_path, config, publish=context.model_repo or False,
                              iteration=context.iteration)
