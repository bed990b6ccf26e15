"""`generate_responses`: K responses per prompt from a model or a `Generator`, sharded and resumable.

Both backends return K responses per prompt in the prompt's order; `generate_responses` wraps either
in `sppo_hub.io.sharding` so `--shard i/n` runs a slice and a killed run redoes only unfinished chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from ..io.sharding import Shard, atomic_write_parquet, merge_chunks, parse_shard, run_sharded
from .base import BACKENDS, GENERATED_FILE, Generator, SamplingConfig, prompt_text, resolve_model_source, to_messages
from .factory import make_generator


def _fingerprint(model: str, prompts: list, sampling: SamplingConfig, backend: str) -> dict:
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    # Where it runs (device) is not part of what is asked for; batch_size is kept out as before.
    settings = {k: v for k, v in asdict(sampling).items() if k not in ("batch_size", "device")}
    return {"model": str(model), "backend": backend, "prompts_sha": digest, **settings}


def generate_responses(
    model: "str | os.PathLike | Generator",
    prompts: list,
    sampling: SamplingConfig | None = None,
    backend: str = "transformers",
    shard: "Shard | str | None" = None,
    out_dir: str | os.PathLike | None = None,
    generator_name: str | None = None,
    show_progress: bool = True,
    ray=None,
    **backend_kwargs,
):
    """K responses per prompt as a `datasets.Dataset` with rows {prompt_id, prompt, responses, generator}.

    `model` is a local folder, a Hub repo id, or a ready `Generator`. With `out_dir`, every finished
    chunk is saved (a rerun resumes) and an unsharded run also writes `out_dir/generated.parquet`.
    With `shard="i/n"` only that slice is generated and returned; `merge_generations(out_dir)`
    checks that every slice finished and writes `generated.parquet`. `show_progress=False` silences
    every bar (the chunk bar and the backend's). Options of the backend go in `backend_kwargs`
    (vLLM: tensor_parallel_size, enforce_eager, max_model_len, ...). `ray` (an `io.ray_executor.RayOptions`
    with `enabled`) samples the chunks on Ray actors, each loading the model once; the output is the same.
    """
    sampling = sampling or SamplingConfig()
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown generation backend {backend!r}; use one of {', '.join(BACKENDS)}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts: got an empty list; pass at least one prompt")
    messages = [to_messages(p) for p in prompts]
    shard = parse_shard(shard)
    if isinstance(model, Generator):
        name = generator_name or model.name
        model_id = name
    else:
        model_id = resolve_model_source(model)
        name = generator_name or model_id
    state: dict[str, Generator] = {}

    remote = ray is not None and getattr(ray, "enabled", False)
    if remote and isinstance(model, Generator):
        raise ValueError("ray: pass the model as a folder or Hub id (each Ray actor loads its own copy), "
                         "not a Generator instance")

    def process(ids: list[int], items: list) -> list[dict]:
        if "gen" not in state:  # load lazily: a fully resumed run never loads the model
            state["gen"] = model if isinstance(model, Generator) else make_generator(
                model_id, sampling, backend, show_progress=show_progress and not remote, **backend_kwargs)
        outs = state["gen"].generate(items, seed_offset=ids[0])
        if len(outs) != len(items):
            raise RuntimeError(f"generator returned {len(outs)} response lists for {len(items)} prompts")
        return [{"prompt_id": i, "prompt": prompt_text(prompts[i]), "responses": list(r), "generator": name}
                for i, r in zip(ids, outs)]

    fingerprint = _fingerprint(model_id, messages, sampling, backend) if out_dir is not None else None
    executor = None
    if remote:  # each actor unpickles its own copy of `process` (and of its empty `state`) and loads the model
        from ..io.ray_executor import RayChunkExecutor, returning

        executor = RayChunkExecutor(ray, build=returning(process))
    try:
        rows = run_sharded(messages, process, out_dir, shard, sampling.chunk_size, fingerprint, desc="generate",
                           show_progress=show_progress, executor=executor)
    finally:  # a generator built here is released here (vLLM's engine processes hold their memory until then)
        if "gen" in state and state["gen"] is not model:
            state["gen"].close()
        if executor is not None:
            executor.close()
    if out_dir is not None and shard.count == 1:
        return _save_merged(rows, Path(out_dir))
    return generations_dataset(rows)


def generations_dataset(rows: list[dict]):
    """Rows -> `datasets.Dataset` with the generation schema."""
    from datasets import Dataset, Features, List, Value

    features = Features({"prompt_id": Value("int64"), "prompt": Value("string"),
                         "responses": List(Value("string")), "generator": Value("string")})
    return Dataset.from_list(rows, features=features)


def _save_merged(rows: list[dict], out_dir: Path):
    ds = generations_dataset(rows)
    atomic_write_parquet(ds, out_dir / GENERATED_FILE)
    return ds


def merge_generations(out_dir: str | os.PathLike):
    """Check every shard under `out_dir` finished, write `generated.parquet`, return the dataset."""
    return _save_merged(merge_chunks(out_dir), Path(out_dir))
