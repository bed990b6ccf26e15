"""Stages `baseline` and `compare`: pi_t against pi_0 and pi_{t-1} on held-out prompts, judged both ways round."""

from __future__ import annotations

import json
from pathlib import Path

from ..manifest import atomic_write_text
from .context import RunContext


def _responses(ctx: RunContext, t: int, model: str, timer) -> tuple[dict, list[str]]:
    """One sampled response of pi_t per held-out prompt, saved in iter<t>/: (artifacts, the responses)."""
    from ...generation import generate_responses

    sampling = ctx.sampling(0, num_samples=1)  # same seed every iteration: only the policy differs
    options = {**ctx.config.policy_load_kwargs(base=t == 0), **ctx.config.generation_kwargs}  # model.revision/dtype/...
    with timer.computing():
        ds = generate_responses(model, ctx.heldout_prompts(), sampling, backend=ctx.config.generation_backend,
                                **options)
    responses = [r[0] for r in ds["responses"]]
    path = ctx.iter_dir(t) / "compare_responses.json"
    atomic_write_text(path, json.dumps(responses, indent=1))
    art = {"path": str(path), "policy": model, "seed": sampling.seed}
    # A verifiable judge (the rule-based correctness judge) also scores these responses against references:
    # held-out accuracy, read from the same generations (nothing is generated or judged twice).
    accuracy = getattr(ctx.judge(), "accuracy", None)
    if accuracy is not None:
        value = accuracy(ctx.heldout_prompts(), [[r] for r in responses])
        art["accuracy"] = None if value is None else round(value, 4)
    return art, responses


def _win_rate(ctx: RunContext, responses_a: list[str], responses_b: list[str], timer) -> float:
    """Mean P(a > b) over the held-out prompts, both presentation orders judged."""
    from ...core.preference import pairwise_probabilities

    judge = ctx.judge()
    with timer.computing():
        tables = judge.pairwise_tables(ctx.heldout_prompts(), [[a, b] for a, b in zip(responses_a, responses_b)])
    probs = [pairwise_probabilities(table, kind=judge.output_kind)[0, 1] for table in tables]
    return float(sum(probs) / len(probs))


def baseline(ctx: RunContext, t: int, timer) -> dict:
    """Stage `baseline` (t=0): pi_0's responses, what every iteration is compared with."""
    art, _ = _responses(ctx, 0, ctx.policy_path(0), timer)
    if art.get("accuracy") is not None:
        ctx.console.print(f"  pi_0 held-out accuracy: {art['accuracy']:.1%} ({len(ctx.heldout_prompts())} prompts, "
                          f"{getattr(ctx.judge(), 'name', ctx.config.judge.type)})")
    return art


def compare(ctx: RunContext, t: int, timer) -> dict:
    """Stage `compare`: pi_t's responses and its win rates against pi_0 and pi_{t-1}."""
    art, ours = _responses(ctx, t, ctx.policy_path(t), timer)
    read = lambda i, name: json.loads(Path(ctx.artifacts(i, name)["path"]).read_text())  # noqa: E731
    art["win_rate_vs_base"] = round(_win_rate(ctx, ours, read(0, "baseline"), timer), 4)
    # pi_1's previous policy is pi_0: the same pairs, judged once
    art["win_rate_vs_previous"] = art["win_rate_vs_base"] if t == 1 else \
        round(_win_rate(ctx, ours, read(t - 1, "compare"), timer), 4)
    acc = "" if art.get("accuracy") is None else \
        f"; held-out accuracy {ctx.artifacts(0, 'baseline').get('accuracy', 0):.1%} (pi_0) -> {art['accuracy']:.1%}"
    ctx.console.print(
        f"  pi_{t} win rate vs pi_{t - 1}: {art['win_rate_vs_previous']:.3f}, vs base: {art['win_rate_vs_base']:.3f}{acc}"
    )
    return art
