"""The judge stage: raw K x K tables for a generated dataset, sharded and resumable.

`judge_dataset(judge, generated)` adds `raw_table` (the judge's K x K output as a list of lists) and
`table_kind` ("logits" or "probs") to the generation rows. With `out_dir`, each chunk of prompts is
saved as soon as it is judged (`sppo_hub.io.sharding`), so a judge that fails midway loses nothing
already judged and a rerun continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from ..io.sharding import Shard, atomic_write_parquet, merge_chunks, parse_shard, run_sharded, shard_range
from .base import PairwiseJudge

JUDGED_FILE = "judged.parquet"


def load_generated(path: str | os.PathLike):
    """A generation output: a `sppo-hub generate --out` folder, a saved dataset, or a .parquet/.jsonl file."""
    from datasets import Dataset, load_from_disk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--generated: {path} does not exist; write it with `sppo-hub generate --out {path}`")
    if path.is_dir():
        from ..generation.base import GENERATED_FILE
        from ..generation.responses import merge_generations

        if (path / GENERATED_FILE).exists():
            return Dataset.from_parquet(str(path / GENERATED_FILE))
        if (path / "state.json").exists():
            return load_from_disk(str(path))
        if (path / "manifest.json").exists():  # shards only: merging checks that all are there
            return merge_generations(path)
        raise ValueError(f"--generated: {path} holds no {GENERATED_FILE}, saved dataset or generation shards")
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    if path.suffix in (".json", ".jsonl"):
        return Dataset.from_json(str(path))
    raise ValueError(f"--generated: unsupported file {path}; use a generate --out folder, .parquet or .jsonl")


def _validate_rows(ds) -> None:
    for column in ("prompt", "responses"):
        if column not in ds.column_names:
            raise ValueError(f"generated: missing column {column!r}; columns are {', '.join(ds.column_names)}")
    ids = ds["prompt_id"] if "prompt_id" in ds.column_names else list(range(len(ds)))
    for pid, responses in zip(ids, ds["responses"]):
        n = len(responses or [])
        if n < 2:
            raise ValueError(
                f"generated: prompt_id {pid} has {n} response(s); judging needs K >= 2 per prompt "
                "(generate with --num-samples 2 or more)"
            )


def judge_dataset(judge, generated, out_dir: str | os.PathLike | None = None,
                  shard: "Shard | str | None" = None, batch_size: int = 16, show_progress: bool = True, ray=None):
    """Judge every ordered pair of each prompt's responses; return the rows with `raw_table`, `table_kind`.

    `judge` is a loaded `PairwiseJudge` or a `JudgeConfig` (loaded here, or on each Ray actor with `ray`).
    `generated` is a `datasets.Dataset`, a list of row dicts ({prompt, responses, [prompt_id]}) or a
    path (see `load_generated`). `batch_size` prompts go to the judge per call and form one saved
    chunk. With `shard="i/n"` only that slice is judged and returned; `merge_judged(out_dir)`
    assembles all slices. `show_progress=False` silences every bar of the stage. `ray` (a
    `io.ray_executor.RayOptions` with `enabled`) judges the chunks on Ray actors, each holding one judge.
    """
    from datasets import Dataset

    from .base import JudgeConfig

    ds = _as_dataset(generated)
    if len(ds) == 0:
        raise ValueError("generated: the dataset has no rows")
    _validate_rows(ds)
    if "prompt_id" not in ds.column_names:
        ds = ds.add_column("prompt_id", list(range(len(ds))))
    records = ds.to_list()
    shard = parse_shard(shard)
    executor = None
    if ray is not None and getattr(ray, "enabled", False):
        if not isinstance(judge, JudgeConfig):
            raise ValueError("ray: pass the judge as a JudgeConfig (each Ray actor loads its own copy), not a loaded judge")
        from ..io.ray_executor import RayChunkExecutor

        executor = RayChunkExecutor(ray, build=partial(ChunkJudge.from_config, judge))
        described = executor.describe()
        judge_name, output_kind = described["judge"], described["output_kind"]
    else:
        if isinstance(judge, JudgeConfig):
            from . import load_judge

            judge = load_judge(judge)
        judge_name, output_kind = getattr(judge, "name", type(judge).__name__), judge.output_kind
    total_pairs = sum(len(records[i]["responses"]) * (len(records[i]["responses"]) - 1)
                      for i in shard_range(len(records), shard, int(batch_size)))
    bar = tqdm(total=total_pairs, desc=f"judge ({judge_name})", unit="pair",
               disable=not show_progress or executor is not None)  # on Ray the chunk bar is the display
    started, done_pairs = time.perf_counter(), 0
    local = ChunkJudge(judge) if executor is None else None

    def process(ids: list[int], rows: list[dict]) -> list[dict]:
        nonlocal done_pairs
        out = local(ids, rows)
        done_pairs += sum(len(r["responses"]) * (len(r["responses"]) - 1) for r in rows)
        bar.update(sum(len(r["responses"]) * (len(r["responses"]) - 1) for r in rows))
        bar.set_postfix(pairs_per_s=f"{done_pairs / max(time.perf_counter() - started, 1e-9):.1f}")
        return out

    data_sha = hashlib.sha256(json.dumps([[r["prompt_id"], r["prompt"], r["responses"]] for r in records],
                                         ensure_ascii=False).encode()).hexdigest()[:16]
    fingerprint = {"judge": judge_name, "output_kind": output_kind, "data_sha": data_sha}
    try:
        rows = run_sharded(records, process, out_dir, shard, int(batch_size), fingerprint, desc="judge",
                           show_progress=show_progress, executor=executor)
    finally:
        bar.close()
        if executor is not None:
            executor.close()
    if out_dir is not None and shard.count == 1:
        return _save(rows, Path(out_dir))
    return Dataset.from_list(rows)


class ChunkJudge:
    """One chunk of rows -> the rows with `raw_table` and `table_kind`: what a local process or a Ray actor runs."""

    def __init__(self, judge: PairwiseJudge):
        self.judge = judge
        self.name = getattr(judge, "name", type(judge).__name__)
        self.description = {"judge": self.name, "output_kind": judge.output_kind}

    @classmethod
    def from_config(cls, config) -> "ChunkJudge":
        from . import load_judge

        return cls(load_judge(config))

    def __call__(self, ids: list[int], rows: list[dict]) -> list[dict]:
        tables = self.judge.pairwise_tables([r["prompt"] for r in rows], [list(r["responses"]) for r in rows])
        out = []
        for row, table in zip(rows, tables):
            k = len(row["responses"])
            if getattr(table, "shape", None) != (k, k):
                raise RuntimeError(f"{self.name} returned a {getattr(table, 'shape', '?')} table for "
                                   f"prompt_id {row['prompt_id']} with {k} responses")
            out.append({**row, "raw_table": [[float(v) for v in line] for line in table.tolist()],
                        "table_kind": self.judge.output_kind})
        return out


def _as_dataset(generated):
    """A Dataset as is, a list of row dicts -> Dataset (errors name the row), anything else -> load_generated."""
    from datasets import Dataset

    if isinstance(generated, Dataset):
        return generated
    if isinstance(generated, (list, tuple)):
        for i, row in enumerate(generated):
            if not isinstance(row, dict):
                raise ValueError(f"generated[{i}]: expected a dict with 'prompt' and 'responses', "
                                 f"got {type(row).__name__}")
            missing = [c for c in ("prompt", "responses") if c not in row]
            if missing:
                raise ValueError(f"generated[{i}]: missing {', '.join(map(repr, missing))}; each row needs "
                                 "'prompt' and 'responses' (a list of K >= 2 strings)")
        return Dataset.from_list([dict(row) for row in generated])
    return load_generated(generated)


def _save(rows: list[dict], out_dir: Path):
    from datasets import Dataset

    ds = Dataset.from_list(rows)
    atomic_write_parquet(ds, out_dir / JUDGED_FILE)
    return ds


def merge_judged(out_dir: str | os.PathLike):
    """Check every judge shard under `out_dir` finished, write `judged.parquet`, return the dataset."""
    return _save(merge_chunks(out_dir), Path(out_dir))
