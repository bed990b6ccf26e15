"""Stage `evaluate`: the recipe's evaluation hooks (`loop.hooks`) on the published pi_t."""

from __future__ import annotations

from ..hooks import IterationContext, resolve_eval_hook
from .context import RunContext


def evaluate(ctx: RunContext, t: int, timer, published_data: dict) -> dict:
    pub = ctx.artifacts(t, "publish_model")
    context = IterationContext(
        iteration=t, config=ctx.config, run_dir=ctx.run_dir, model_path=ctx.policy_path(t),
        model_repo=pub.get("repo_id"), model_revision=pub.get("commit"),
        data_repo=published_data.get("repo_id"), endpoint=ctx.endpoint,
    )
    results = {}
    for hook in ctx.config.evaluation.hooks:
        fn = resolve_eval_hook(hook["name"])
        results[hook["name"]] = fn(context, **(hook.get("args") or {}))
    return {"results": results}
