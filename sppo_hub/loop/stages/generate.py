"""Stage `generate`: K responses per prompt of iteration t, sampled from pi_{t-1}."""

from __future__ import annotations

from . import equilibrium
from .context import RunContext, save_dataset_atomic, sha


def generate(ctx: RunContext, t: int, timer) -> dict:
    from ...generation import generate_responses

    idx, prompts = ctx.iteration_prompts(t)
    out = ctx.iter_dir(t)
    sampling = ctx.sampling(t)
    model = ctx.policy_path(t - 1)
    ctx.release_judge_for_vllm()
    options = {**ctx.config.policy_load_kwargs(base=t == 1), **ctx.config.generation_kwargs}  # model.revision/dtype/...
    with timer.computing():  # chunks saved under out/generate-chunks: a killed stage resumes mid-way
        ds = generate_responses(model, prompts, sampling, backend=ctx.config.generation_backend,
                                out_dir=out / "generate-chunks", **options)
    ds = ds.remove_columns([c for c in ("prompt_id",) if c in ds.column_names]).add_column("prompt_id", idx)
    with timer.computing():  # extra candidates to judge (None unless equilibrium.exploration is on)
        extra = equilibrium.explore(ctx, t, prompts, sampling, out)
    if extra is not None:
        ds = equilibrium.with_candidates(ds, extra)
    path = save_dataset_atomic(ds, out / "generations")
    return {"path": path, "policy": model, "seed": sampling.seed, "rows": len(ds), "sha": sha(ds["responses"])}
