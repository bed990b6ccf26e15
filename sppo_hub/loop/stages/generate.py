"""Stage `generate`: K responses per prompt of iteration t, sampled from pi_{t-1}.

Every process of a launch takes part: rank i samples shard i/n of the chunk grid (each chunk saved as soon as
it is done, so a killed rank resumes where it stopped); the main process merges the chunks, which are the
1-process run's chunks byte for byte (a chunk's seed is its first prompt id, whoever samples it).
"""

from __future__ import annotations

from ...train.precision import full_weights_on_every_rank
from ..ranks import StageSplit, in_job_vllm_options, merge_when_complete, stage_split
from . import equilibrium
from .context import RunContext, save_dataset_atomic, sha


def generation_plan(ctx: RunContext, on_ray: bool = False) -> tuple[dict, StageSplit]:
    """(extra generation options, this process's part) for a stage that samples from a policy on every rank:
    with vLLM inside a multi-process launch, one engine per rank (or per tensor-parallel group of ranks)."""
    group, in_job = 1, {}
    if ctx.config.generation_backend == "vllm" and ctx.process.world_size > 1 and not on_ray:
        in_job = in_job_vllm_options()
        group = int(ctx.config.generation_kwargs.get("tensor_parallel_size", 1)) if in_job else 1
    return in_job, stage_split(ctx.process, on_ray=on_ray, group_size=group)


def generate(ctx: RunContext, t: int, timer) -> dict:
    from ...generation import generate_responses, merge_generations
    from ...io.sharding import work_by_shard

    ray = ctx.config.ray if ctx.config.ray.enabled else None
    in_job, split = generation_plan(ctx, on_ray=ray is not None)
    if not split.works:
        return {}
    idx, prompts = ctx.iteration_prompts(t)
    out = ctx.iter_dir(t)
    sampling = ctx.sampling(t)
    model = ctx.policy_path(t - 1)
    ctx.release_judge_for_vllm()
    options = {**in_job, **ctx.config.policy_load_kwargs(base=t == 1), **ctx.config.generation_kwargs}
    chunks = out / "generate-chunks"
    # Every rank loads the policy in full (under FSDP's cpu_ram_efficient_loading, `from_pretrained` would give
    # ranks other than 0 zeros, and they would sample garbage).
    with timer.computing(), full_weights_on_every_rank():  # this rank's chunks: a killed stage resumes mid-way
        ds = generate_responses(model, prompts, sampling, backend=ctx.config.generation_backend, out_dir=chunks,
                                shard=split.shard, show_progress=split.records, ray=ray, **options)
    if not split.records:
        return {}
    if split.merges:
        ds = merge_when_complete(ctx.process, chunks, merge_generations)
    ds = ds.remove_columns([c for c in ("prompt_id",) if c in ds.column_names]).add_column("prompt_id", idx)
    with timer.computing():  # extra candidates to judge (None unless equilibrium.exploration is on)
        extra = equilibrium.explore(ctx, t, prompts, sampling, out)
    if extra is not None:
        ds = equilibrium.with_candidates(ds, extra)
    path = save_dataset_atomic(ds, out / "generations")
    return {"path": path, "policy": model, "seed": sampling.seed, "rows": len(ds), "sha": sha(ds["responses"]),
            "engine": "ray" if ray else "processes", "work": work_by_shard(chunks, _token_counter(model, options))}


def _token_counter(model: str, options: dict):
    """Responses and their tokens (the policy's tokenizer) in a list of generation rows, for the manifest's `work`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, revision=options.get("revision"),
                                              trust_remote_code=bool(options.get("trust_remote_code")))

    def measure(rows: list[dict]) -> dict:
        responses = [r for row in rows for r in row["responses"]]
        ids = tokenizer(responses, add_special_tokens=False)["input_ids"] if responses else []
        return {"responses": len(responses), "tokens": sum(len(x) for x in ids)}

    return measure
