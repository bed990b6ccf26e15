"""Stage `judge`: P(y_i > y_j | x) for every ordered pair of iteration t's responses."""

from __future__ import annotations

from .context import RunContext, load_dataset, save_dataset_atomic, sha


def judge(ctx: RunContext, t: int, timer, generated: dict) -> dict:
    from ...judges.stage import judge_dataset

    out = ctx.iter_dir(t)
    ds = load_dataset(generated["path"])
    model = ctx.judge()
    with timer.computing():  # chunks saved under out/judge-chunks: a killed stage resumes mid-way
        ds = judge_dataset(model, ds, out_dir=out / "judge-chunks", batch_size=ctx.config.judge.batch_size)
    path = save_dataset_atomic(ds, out / "judged")
    return {"path": path, "judge": getattr(model, "name", ctx.config.judge.type),
            "output_kind": model.output_kind, "sha": sha(ds["raw_table"])}
