"""Stages `baseline` and `compare`: pi_t against pi_0 and pi_{t-1} on held-out prompts, judged both ways round.

Each policy answers every held-out prompt `evaluation.compare_samples` times (same seed every iteration:
only the policy differs). Win rates compare all pairs of two policies' answers to a question; with a
verifiable judge the same answers give held-out accuracy and its gain over pi_0. Every number comes with a
95% interval clustered by question (sppo_hub/core/intervals.py says which interval and why).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...core.intervals import accuracy_interval, fmt_gain, fmt_interval, mean_interval
from ..manifest import atomic_write_text
from .context import RunContext


def _rounded(interval) -> list[float]:
    return [round(float(v), 4) for v in interval]


def read_responses(path: str | Path) -> list[list[str]]:
    """A saved compare_responses.json: one list of answers per held-out prompt (older runs saved one string)."""
    data = json.loads(Path(path).read_text())
    return [r if isinstance(r, list) else [r] for r in data]


def _responses(ctx: RunContext, t: int, model: str, timer) -> tuple[dict | None, list[list[str]] | None]:
    """`compare_samples` sampled responses of pi_t per held-out prompt, saved in iter<t>/: (artifacts, responses).

    Every rank samples its shard of the held-out prompts (chunk files under iter<t>/compare-chunks, so a killed
    stage resumes); the main process merges them and goes on; the others get (None, None)."""
    from ...generation import generate_responses, merge_generations
    from ...train.precision import full_weights_on_every_rank
    from ..ranks import merge_when_complete
    from .generate import generation_plan

    samples = ctx.config.evaluation.compare_samples
    sampling = ctx.sampling(0, num_samples=samples)  # same seed every iteration: only the policy differs
    in_job, split = generation_plan(ctx)
    options = {**in_job, **ctx.config.policy_load_kwargs(base=t == 0), **ctx.config.generation_kwargs}
    chunks = ctx.iter_dir(t) / "compare-chunks"
    with timer.computing(), full_weights_on_every_rank():
        ds = generate_responses(model, ctx.heldout_prompts(), sampling, backend=ctx.config.generation_backend,
                                out_dir=chunks, shard=split.shard, show_progress=split.records, **options)
    if not split.records:
        return None, None
    if split.merges:
        ds = merge_when_complete(ctx.process, chunks, merge_generations)
    responses = [list(r) for r in ds["responses"]]
    path = ctx.iter_dir(t) / "compare_responses.json"
    atomic_write_text(path, json.dumps(responses, indent=1))
    from ...io.sharding import work_by_shard

    art = {"path": str(path), "policy": model, "seed": sampling.seed, "samples_per_prompt": samples,
           "work": work_by_shard(chunks)}
    # A verifiable judge (the rule-based correctness judge) also scores these responses against references:
    # held-out accuracy, read from the same generations (nothing is generated or judged twice).
    correctness = getattr(ctx.judge(), "correctness", None)
    if correctness is not None:
        verdicts = [correctness(p, rs) for p, rs in zip(ctx.heldout_prompts(), responses)]
        verdicts = [v for v in verdicts if v and v[0] is not None]  # unverifiable prompts have no accuracy
        if verdicts:
            art["correct_per_prompt"] = [sum(map(bool, v)) for v in verdicts]
            art["accuracy"] = round(sum(art["correct_per_prompt"]) / (len(verdicts) * samples), 4)
            art["accuracy_ci"] = _rounded(accuracy_interval(verdicts)) if len(verdicts) > 1 else None
    return art, responses


def _win_rates(ctx: RunContext, ours: list[list[str]], theirs: list[list[str]], timer) -> list[float]:
    """Per held-out prompt: mean P(a > b) over all pairs of our and their answers, both presentation orders judged."""
    from ...core.preference import pairwise_probabilities

    judge = ctx.judge()
    with timer.computing():
        tables = judge.pairwise_tables(ctx.heldout_prompts(), [a + b for a, b in zip(ours, theirs)])
    rates = []
    for table, a in zip(tables, ours):
        k = len(a)
        rates.append(float(pairwise_probabilities(table, kind=judge.output_kind)[:k, k:].mean()))
    return rates


def _summary(rates: list[float]) -> tuple[float, list[float] | None]:
    return round(sum(rates) / len(rates), 4), (_rounded(mean_interval(rates)) if len(rates) > 1 else None)


def baseline(ctx: RunContext, t: int, timer) -> dict:
    """Stage `baseline` (t=0): pi_0's responses, what every iteration is compared with."""
    art, _ = _responses(ctx, 0, ctx.policy_path(0), timer)
    if art is None:  # another rank: its shard is written, the main process records the stage
        return {}
    if art.get("accuracy") is not None:
        n = len(ctx.heldout_prompts())
        ctx.console.print(f"  pi_0 held-out accuracy: {fmt_interval(art['accuracy'], art['accuracy_ci'], True)} "
                          f"({n} prompts x {art['samples_per_prompt']} samples, 95% interval; "
                          f"{getattr(ctx.judge(), 'name', ctx.config.judge.type)})")
    return art


def compare(ctx: RunContext, t: int, timer) -> dict:
    """Stage `compare`: pi_t's responses, its win rates against pi_0 and pi_{t-1}, its accuracy gain over pi_0."""
    art, ours = _responses(ctx, t, ctx.policy_path(t), timer)
    if art is None:  # another rank: its shard is written, the main process judges and records
        return {}
    read = lambda i, name: read_responses(ctx.artifacts(i, name)["path"])  # noqa: E731
    base_rates = _win_rates(ctx, ours, read(0, "baseline"), timer)
    art["win_rate_vs_base"], art["win_rate_vs_base_ci"] = _summary(base_rates)
    # pi_1's previous policy is pi_0: the same pairs, judged once
    prev_rates = base_rates if t == 1 else _win_rates(ctx, ours, read(t - 1, "compare"), timer)
    art["win_rate_vs_previous"], art["win_rate_vs_previous_ci"] = _summary(prev_rates)
    base = ctx.artifacts(0, "baseline")
    acc = ""
    if art.get("accuracy") is not None and base.get("correct_per_prompt") is not None:
        k, k0 = art["samples_per_prompt"], base.get("samples_per_prompt", 1)
        gains = [c / k - c0 / k0 for c, c0 in zip(art["correct_per_prompt"], base["correct_per_prompt"])]
        art["accuracy_gain"], art["accuracy_gain_ci"] = _summary(gains)
        acc = (f"; held-out accuracy {fmt_interval(base['accuracy'], base.get('accuracy_ci'), True)} (pi_0) -> "
               f"{fmt_interval(art['accuracy'], art['accuracy_ci'], True)}, "
               f"gain {fmt_gain(art['accuracy_gain'], art['accuracy_gain_ci'])} points")
    ctx.console.print(
        f"  pi_{t} win rate vs pi_{t - 1}: {fmt_interval(art['win_rate_vs_previous'], art['win_rate_vs_previous_ci'])}, "
        f"vs base: {fmt_interval(art['win_rate_vs_base'], art['win_rate_vs_base_ci'])}{acc}"
    )
    return art
