"""The run side of `sppo_hub.equilibrium.options` (the recipe's `equilibrium:` section; every option off by default).

- `explore`: the generate stage's extra candidates (from pi_0, earlier iterates or a hotter pi_{t-1}), appended
  after pi_{t-1}'s own K responses so the judge scores them with the rest;
- `adjust_datasets`: the data stage re-estimates win rates against pi_{t-1}'s K samples only;
- `prepare_training`: the train stage's dataset (every response with its own target, or the best / worst pairs)
  and, with `reference_mix` / `magnet_every` / `optimistic`, the anchor checkpoints' log-probs so that the
  trainer's reference becomes pi_{t-1}^(1-c) anchor^c (`options.reference_weights`), with the step 2 eta when
  optimistic;
- `record_mixture`: `mixture.json` in the run folder after each iteration, naming the iterates (published repo
  and commit, or local folder) and weights of the averaged policy (`sppo_hub.generation.mixture`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .context import RunContext

EXPLORE_SEED_OFFSET = 500_000  # the extra candidates' own seed stream, apart from pi_{t-1}'s samples


def explore(ctx: RunContext, t: int, prompts: list, sampling, out: Path) -> list[list[str]] | None:
    """E extra candidates per prompt from `equilibrium.exploration.source`, or None when exploration is off."""
    from ...generation import generate_responses
    from ...generation.factory import MixtureGenerator
    from ...generation.mixture import MixturePolicy

    ex = ctx.config.equilibrium.exploration
    if ex.candidates == 0:
        return None
    extra = replace(sampling, num_samples=ex.candidates, seed=int(sampling.seed) + EXPLORE_SEED_OFFSET)
    kwargs = dict(ctx.config.generation_kwargs)
    if ex.source == "initial":
        model = ctx.policy_path(0)
    elif ex.source == "temperature":
        model, extra = ctx.policy_path(t - 1), replace(extra, temperature=ex.temperature)
    else:  # a uniformly drawn earlier iterate per response: pi_0 .. pi_{t-1}
        mix = MixturePolicy.from_iterates({i: ctx.policy_path(i) for i in range(t)}, {i: 1.0 for i in range(t)})
        model, kwargs = MixtureGenerator(mix, extra, backend=ctx.config.generation_backend, **kwargs), {}
    ds = generate_responses(model, prompts, extra, backend=ctx.config.generation_backend,
                            out_dir=out / "explore-chunks", generator_name=f"explore:{ex.source}", **kwargs)
    return [list(r) for r in ds["responses"]]


def with_candidates(generations, extra: list[list[str]]):
    """The generations dataset with each prompt's extra candidates appended after its K policy samples."""
    if len(extra) != len(generations):
        raise RuntimeError(f"exploration returned {len(extra)} rows for {len(generations)} prompts")
    responses = [list(r) + list(e) for r, e in zip(generations["responses"], extra)]
    return generations.remove_columns("responses").add_column("responses", responses)


def adjust_datasets(ctx: RunContext, datasets: dict) -> dict:
    """With exploration, win rates (hence pairs and triplets) against pi_{t-1}'s own K samples only."""
    from ...core.data import build_pairs_dataset, build_triplets_dataset
    from ...equilibrium.options import explored_table_dataset

    if ctx.config.equilibrium.exploration.candidates == 0:
        return datasets
    dc = ctx.config.data
    table = explored_table_dataset(datasets["table"], int(ctx.config.sampling.num_samples), dc.include_diagonal)
    out = {"table": table, "pairs": build_pairs_dataset(table, drop_ties=dc.drop_ties)}
    if "triplets" in datasets:
        out["triplets"] = build_triplets_dataset(table)
    return out


def anchors(ctx: RunContext, t: int) -> dict[int, float]:
    """{iteration: weight} of the checkpoints mixed into iteration t's reference besides pi_{t-1} (empty: none)."""
    from ...equilibrium.options import anchor_models

    eq = ctx.config.equilibrium
    return anchor_models(t, eq.reference_mix, eq.magnet_every, eq.optimistic)


def prepare_training(ctx: RunContext, datasets: dict, args, t: int = 1):
    """(train dataset, SPPOConfig) for iteration t under the `equilibrium` options.

    The trainer's reference is pi_{t-1}^(1-c) anchor^c (`SPPOConfig.reference_mix` = c, the anchor's log-probs in the
    init_*_logps columns): `equilibrium.options.reference_weights` (the magnet, pi_0 or with `magnet_every` the iterate
    `magnet_iteration(t, every)`, with weight reference_mix; with `optimistic` from t = 2 on, earlier iterates and
    the step 2 eta), folded by `combined_anchor`. One forward pass per anchor model.
    """
    from ...equilibrium.options import all_response_pairs

    eq = ctx.config.equilibrium
    train = all_response_pairs(datasets["table"]) if eq.all_responses else datasets["pairs"]
    weights = anchors(ctx, t)
    if not weights:
        return train, args
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ...equilibrium.options import combined_anchor, optimistic_step
    from ...train.trainer import INIT_LOGP_COLUMNS, add_initial_logps

    columns = {}
    for it in weights:  # each anchor model is only needed for this one pass
        path = ctx.policy_path(it)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if args.bf16 else torch.float32)
        scored = add_initial_logps(model, train, args, processing_class=AutoTokenizer.from_pretrained(path))
        del model
        columns[it] = {c: np.asarray(scored[c], dtype=np.float64) for c in INIT_LOGP_COLUMNS}
    for c in INIT_LOGP_COLUMNS:
        mix, logps = combined_anchor(list(weights.values()), [columns[it][c] for it in weights])
        train = train.remove_columns([c]) if c in train.column_names else train
        train = train.add_column(c, logps.tolist())
    return train, replace(args, reference_mix=mix, eta=optimistic_step(args.eta, eq.optimistic, t), beta=None)


def record_mixture(ctx: RunContext, t: int) -> Path | None:
    """Write (or rewrite) `<run>/mixture.json`: the averaged policy of pi_1..pi_t under `equilibrium.average`."""
    from ...generation.mixture import MIXTURE_FILE
    from ...equilibrium.options import mixture_record

    eq = ctx.config.equilibrium
    if eq.average == "none" or not ctx.process.is_main:
        return None
    models, revisions = {}, {}
    for i in range(1, t + 1):
        published = ctx.artifacts(i, "publish_model")
        if published.get("repo_id"):
            models[i], revisions[i] = published["repo_id"], published.get("commit")
        elif ctx.artifacts(i, "train").get("path"):
            models[i] = ctx.artifacts(i, "train")["path"]
    if not models:
        return None
    mix = mixture_record(models, eq.average, eq.average_window, revisions, run=ctx.config.run_name,
                         endpoint=ctx.endpoint)
    return mix.save(ctx.run_dir / MIXTURE_FILE)
