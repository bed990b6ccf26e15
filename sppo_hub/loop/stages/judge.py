"""Stage `judge`: P(y_i > y_j | x) for every ordered pair of iteration t's responses.

Every process of a launch takes part: rank i judges shard i/n of the prompts with its own copy of the judge
(on its own device); the main process merges the chunks, identical to a 1-process run's.
"""

from __future__ import annotations

import json

from ...train.precision import full_weights_on_every_rank
from ..ranks import merge_when_complete, stage_split
from .context import RunContext, load_dataset, save_dataset_atomic, sha


def judge(ctx: RunContext, t: int, timer, generated: dict) -> dict:
    from ...judges.stage import judge_dataset, merge_judged
    from ...io.sharding import work_by_shard

    out = ctx.iter_dir(t)
    ray = ctx.config.ray if ctx.config.ray.enabled else None
    split = stage_split(ctx.process, on_ray=ray is not None)
    if not split.works:
        return {}
    ds = load_dataset(generated["path"])
    if ray is None:
        with full_weights_on_every_rank():  # not zeros off rank 0 under FSDP's cpu_ram_efficient_loading
            scorer = ctx.judge()
    else:
        scorer = ctx.judge_config()  # each Ray actor loads its own
    chunks = out / "judge-chunks"
    with timer.computing():  # this rank's chunks under out/judge-chunks: a killed stage resumes mid-way
        ds = judge_dataset(scorer, ds, out_dir=chunks, shard=split.shard, batch_size=ctx.config.judge.batch_size,
                           show_progress=split.records, ray=ray)
    if not split.records:
        return {}
    if split.merges:
        ds = merge_when_complete(ctx.process, chunks, merge_judged)
    path = save_dataset_atomic(ds, out / "judged")
    kind = ds[0]["table_kind"] if len(ds) else ctx.config.judge.output_kind
    judge_name = json.loads((chunks / "manifest.json").read_text())["fingerprint"]["judge"]  # whoever loaded it
    return {"path": path, "judge": judge_name,
            "output_kind": kind, "sha": sha(ds["raw_table"]), "engine": "ray" if ray else "processes",
            "work": work_by_shard(chunks)}
