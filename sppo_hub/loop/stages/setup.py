"""Run-level stages before iteration 1: the prompt pool and its split, and the base model pi_0."""

from __future__ import annotations

import json
import random

from ..config import RunConfig
from ..manifest import atomic_write_text
from .context import RunContext, model_cache_dir, resolve_model_path, sha


def split_prompts(prompts: list[str], iterations: int, split: bool, holdout: int = 0) -> tuple[list[list[int]], list[int]]:
    """Indices of each iteration's prompts (disjoint chunks like the paper, or all reused) and the held-out ones."""
    n_train = len(prompts) - holdout
    if n_train < (iterations if split else 1):
        raise ValueError(
            f"prompts: {len(prompts)} prompts ({holdout} held out for evaluation.compare_prompts) cannot feed "
            f"{iterations} iterations; add prompts, lower iterations, or set prompts.split_across_iterations=false."
        )
    train = list(range(n_train))
    held = list(range(n_train, len(prompts)))
    if not split:
        return [train for _ in range(iterations)], held
    size, rest = divmod(n_train, iterations)
    chunks, start = [], 0
    for t in range(iterations):
        end = start + size + (1 if t < rest else 0)
        chunks.append(train[start:end])
        start = end
    return chunks, held


def load_run_prompts(config: RunConfig) -> list[str]:
    """The run's prompt pool: read, shuffled with the run seed, cut to `prompts.limit`."""
    from ...io.prompts import load_prompts

    pc = config.prompts
    prompts = list(load_prompts(pc.path, split=pc.split, column=pc.column, config_name=pc.config_name))
    if pc.shuffle:
        random.Random(config.seed).shuffle(prompts)
    if pc.limit is not None:
        prompts = prompts[: pc.limit]
    return prompts


def plan_prompt_split(config, pool: list[str]) -> tuple[list[list[int]], list[int]]:
    """The run's split of its prompt pool: up to `evaluation.compare_prompts` held out (leaving one per
    iteration), the rest in one chunk per iteration (or all reused)."""
    holdout = min(config.evaluation.compare_prompts, max(len(pool) - config.iterations, 0))
    return split_prompts(pool, config.iterations, config.prompts.split_across_iterations, holdout)


def prompts(ctx: RunContext, t: int, timer) -> dict:
    """Stage `prompts`: the pool saved in the run folder, one disjoint chunk per iteration, the held-out prompts."""
    cfg = ctx.config
    pool = ctx.preloaded_prompts if ctx.preloaded_prompts is not None else load_run_prompts(cfg)
    chunks, held = plan_prompt_split(cfg, pool)
    path = ctx.run_dir / "prompts.json"
    atomic_write_text(path, json.dumps(pool, indent=0))
    return {"path": str(path), "count": len(pool), "sha": sha(pool), "chunks": chunks, "heldout": held}


def base_model(ctx: RunContext, t: int, timer) -> dict:
    """Stage `base_model`: where pi_0 is read from."""
    cfg = ctx.config
    return {"path": resolve_model_path(cfg.model.name_or_path, model_cache_dir()),
            "name": cfg.model.name_or_path, "revision": cfg.model.revision}
