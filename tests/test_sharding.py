"""Shard parsing and slicing, atomic chunk files, resume after a failure, and the checked merge; then
`sppo-hub generate/judge --shard i/n` as 2 and 3 separate worker processes, merged and compared with one
process, a worker killed with SIGKILL mid-shard, and a shard missing at merge time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sppo_hub.io.sharding import (
    Shard,
    chunk_ranges,
    merge_chunks,
    missing_shards,
    parse_shard,
    run_sharded,
    shard_range,
    unfinished_items,
    work_by_shard,
)


def test_parse_shard_accepts_i_of_n_and_rejects_bad_specs():
    assert parse_shard("1/4") == Shard(1, 4)
    assert parse_shard(" 0 / 2 ") == Shard(0, 2)
    assert parse_shard(None) == Shard(0, 1)
    assert parse_shard((2, 3)) == Shard(2, 3)
    for bad in ("4/4", "1/0", "a/b", "1-2", "-1/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


@pytest.mark.parametrize("num_items", [0, 1, 7, 10, 101])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_cover_every_item_exactly_once(num_items, count):
    seen = [i for index in range(count) for i in shard_range(num_items, Shard(index, count))]
    assert sorted(seen) == list(range(num_items))
    assert len(seen) == num_items
    sizes = [len(shard_range(num_items, Shard(i, count))) for i in range(count)]
    assert max(sizes) - min(sizes) <= 1
    # deterministic: the same call gives the same slice
    assert shard_range(num_items, Shard(count - 1, count)) == shard_range(num_items, Shard(count - 1, count))


@pytest.mark.parametrize("num_items,chunk_size", [(10, 3), (7, 4), (2, 5), (64, 8)])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_are_whole_chunks_of_one_global_grid(num_items, chunk_size, count):
    """Every worker count cuts the same chunks: a chunk's output cannot depend on n."""
    grid = chunk_ranges(range(num_items), chunk_size)
    parts = [chunk_ranges(shard_range(num_items, Shard(i, count), chunk_size), chunk_size) for i in range(count)]
    assert [c for part in parts for c in part] == grid
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_chunks_done_by_another_worker_count_are_reused(tmp_path):
    calls = []
    fn = lambda ids, xs: calls.append(ids) or [{"x": x} for x in xs]  # noqa: E731
    run_sharded(list(range(6)), fn, tmp_path, shard="0/2", chunk_size=2)  # chunks [0,2) and [2,4)
    calls.clear()
    rows = run_sharded(list(range(6)), fn, tmp_path, shard="1/3", chunk_size=2)  # chunk [2,4): already done
    assert calls == [] and [r["x"] for r in rows] == [2, 3]
    run_sharded(list(range(6)), fn, tmp_path, shard="2/3", chunk_size=2)
    assert calls == [[4, 5]] and [r["x"] for r in merge_chunks(tmp_path)] == list(range(6))
    with pytest.raises(ValueError, match=r"chunk_size \(2 -> 3\)"):
        run_sharded(list(range(6)), fn, tmp_path, chunk_size=3)


def test_show_progress_false_prints_nothing(tmp_path, capsys):
    fn = lambda ids, xs: [{"x": x} for x in xs]  # noqa: E731
    run_sharded(list(range(4)), fn, tmp_path, chunk_size=2, show_progress=False)
    run_sharded(list(range(4)), fn, tmp_path, chunk_size=2, show_progress=False)  # resumed: no note either
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_chunk_ranges_split_a_range():
    assert [list(c) for c in chunk_ranges(range(3, 10), 3)] == [[3, 4, 5], [6, 7, 8], [9]]
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_ranges(range(3), 0)


def test_killed_run_resumes_and_redoes_only_unfinished_chunks(tmp_path):
    items = [f"item{i}" for i in range(10)]
    calls = []

    def flaky(ids, chunk):
        calls.append(ids)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return [{"id": i, "value": x.upper()} for i, x in zip(ids, chunk)]

    with pytest.raises(RuntimeError, match="killed"):
        run_sharded(items, flaky, tmp_path, chunk_size=3, fingerprint={"v": 1})
    assert calls == [[0, 1, 2], [3, 4, 5]]
    files = sorted(p.name for p in (tmp_path / "chunks").rglob("*") if p.is_file())
    assert files == ["chunk-00000000-00000003.json"]  # no temp file left behind

    calls.clear()
    rows = run_sharded(items, lambda ids, chunk: calls.append(ids) or [{"id": i, "value": x.upper()}
                                                                      for i, x in zip(ids, chunk)],
                       tmp_path, chunk_size=3, fingerprint={"v": 1})
    assert calls == [[3, 4, 5], [6, 7, 8], [9]]  # chunk 0 was read back, not recomputed
    assert [r["value"] for r in rows] == [x.upper() for x in items]
    assert merge_chunks(tmp_path) == rows


def test_changed_settings_are_refused(tmp_path):
    run_sharded([1, 2], lambda ids, xs: [{"x": x} for x in xs], tmp_path, fingerprint={"temperature": 0.7})
    with pytest.raises(ValueError, match="temperature"):
        run_sharded([1, 2], lambda ids, xs: [{"x": x} for x in xs], tmp_path, fingerprint={"temperature": 1.0})


def test_merge_lists_missing_shards(tmp_path):
    items = list(range(9))
    fn = lambda ids, xs: [{"x": x * 10} for x in xs]  # noqa: E731
    run_sharded(items, fn, tmp_path, shard="0/3", chunk_size=2)
    run_sharded(items, fn, tmp_path, shard="2/3", chunk_size=2)
    num_items, problems = missing_shards(tmp_path)
    assert num_items == 9 and len(problems) == 1 and problems[0].startswith("shard 1/3")
    # 5 chunks of 2 ids split 2/2/1 across the shards: shard 1/3 holds ids 4..7
    with pytest.raises(ValueError, match=r"shard 1/3 \(4 of 4 items unfinished, ids 4\.\.7\)"):
        merge_chunks(tmp_path)
    run_sharded(items, fn, tmp_path, shard="1/3", chunk_size=2)
    assert [r["x"] for r in merge_chunks(tmp_path)] == [x * 10 for x in items]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["num_items"] == 9


def test_merge_without_a_run_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage with --out"):
        merge_chunks(tmp_path)


# --- `sppo-hub generate/judge --shard i/n` as separate worker processes ----------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]
WORDS = ["sea", "Paris", "Python", "life", "echo 1 2 3", "poem", "data", "models", "rain", "hello", "why", "cold"]
PROMPTS = [f"{WORDS[i % 12]} {WORDS[(i * 5 + 3) % 12]}, tell me about it ({i})" for i in range(24)]
GEN_ARGS = ["-k", "2", "--max-new-tokens", "12", "--chunk-size", "2", "--batch-size", "2", "--seed", "5"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sppo_hub", *args]


def _env() -> dict:
    # One thread per worker: workers share 2 cores, and equal thread counts keep float reductions identical.
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")


def _run_workers(argv_of_worker: list[list[str]], timeout: int = 300) -> None:
    """Start every worker at once (separate processes), wait for all, fail with the stderr of any that failed."""
    procs = [subprocess.Popen(_cli(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for argv in argv_of_worker]
    for proc, argv in zip(procs, argv_of_worker):
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{err[-3000:]}"


def _parquet_rows(path: Path) -> list[dict]:
    from datasets import Dataset

    return Dataset.from_parquet(str(path)).to_list()


@pytest.fixture(scope="module")
def sharding_inputs(tiny_model_dir, tiny_pairrm_dir, tmp_path_factory):
    """Prompts, and the single-process results of generate and judge (the reference of every merge)."""
    root = tmp_path_factory.mktemp("sharding")
    prompts = root / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS))
    gen = ["generate", "--model", str(tiny_model_dir), "--prompts", str(prompts), *GEN_ARGS]
    judge = ["judge", "--generated", str(root / "single-gen"), "--judge", "pairrm",
             "--judge-model", str(tiny_pairrm_dir), "--chunk-size", "1"]  # many chunks: a kill lands mid-shard
    _run_workers([gen + ["--out", str(root / "single-gen")]])
    _run_workers([judge + ["--out", str(root / "single-judged")]])
    return {"root": root, "gen": gen, "judge": judge, "generated": _parquet_rows(root / "single-gen" / "generated.parquet"),
            "judged": _parquet_rows(root / "single-judged" / "judged.parquet")}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_workers_merge_to_the_single_process_result(sharding_inputs, workers, tmp_path):
    from sppo_hub.cli import main

    gen_dir, judged_dir = tmp_path / "gen", tmp_path / "judged"
    _run_workers([sharding_inputs["gen"] + ["--out", str(gen_dir), "--shard", f"{i}/{workers}"] for i in range(workers)])
    assert sorted(p.name for p in (gen_dir / "chunks").iterdir()) == [
        f"shard-{i:05d}-of-{workers:05d}" for i in range(workers)]
    assert main(["generate", "merge", "--out", str(gen_dir)]) == 0
    merged = _parquet_rows(gen_dir / "generated.parquet")
    assert merged == sharding_inputs["generated"]  # exactly: same texts, ids, order
    assert len({r for row in merged for r in row["responses"]}) > len(PROMPTS)  # real, varied samples

    judge = [a if a != str(sharding_inputs["root"] / "single-gen") else str(gen_dir) for a in sharding_inputs["judge"]]
    _run_workers([judge + ["--out", str(judged_dir), "--shard", f"{i}/{workers}"] for i in range(workers)])
    assert main(["judge", "merge", "--out", str(judged_dir)]) == 0
    judged = _parquet_rows(judged_dir / "judged.parquet")
    assert judged == sharding_inputs["judged"]  # raw K x K logits equal to the last bit
    assert all(len(row["raw_table"]) == 2 for row in judged)


def _wait_for_chunks(folder: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.rglob("chunk-*.json")):
        assert proc.poll() is None, f"worker exited {proc.returncode} before its first chunk:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "worker wrote no chunk in time"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["generate", "judge"])
def test_worker_killed_mid_shard_resumes_its_shard(sharding_inputs, stage, tmp_path):
    from sppo_hub.cli import main

    out = tmp_path / stage
    argv = sharding_inputs["gen"] if stage == "generate" else sharding_inputs["judge"]
    worker = argv + ["--out", str(out), "--shard", "0/2"]
    proc = subprocess.Popen(_cli(*worker), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _wait_for_chunks(out, proc)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: no cleanup, no atexit
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done_before = {p.name for p in (out / "chunks").rglob("chunk-*.json")}
    total = -(-(len(PROMPTS) // 2) // (2 if stage == "generate" else 1))  # shard 0/2's chunks
    assert 1 <= len(done_before) < total, "the kill should land mid-shard"

    again = subprocess.run(_cli(*worker), capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming shard 0/2, {len(done_before)} of {total} chunks already done" in again.stderr
    _run_workers([argv + ["--out", str(out), "--shard", "1/2"]])
    assert main([stage, "merge", "--out", str(out)]) == 0
    merged = _parquet_rows(out / ("generated.parquet" if stage == "generate" else "judged.parquet"))
    assert merged == sharding_inputs["generated" if stage == "generate" else "judged"]


def test_missing_shard_at_merge_is_a_clear_error_naming_it(sharding_inputs, tmp_path):
    out = tmp_path / "gen"
    _run_workers([sharding_inputs["gen"] + ["--out", str(out), "--shard", f"{i}/3"] for i in (0, 2)])
    merge = subprocess.run(_cli("generate", "merge", "--out", str(out)), capture_output=True, text=True, env=_env(),
                           timeout=120)
    assert merge.returncode == 2 and "Traceback" not in merge.stderr
    assert "shard 1/3 (8 of 8 items unfinished, ids 8..15)" in merge.stderr
    assert "Run the missing shards with the same --out" in merge.stderr
    assert not (out / "generated.parquet").exists()  # nothing half-written


def test_work_by_shard_and_unfinished_items_follow_the_chunk_files(tmp_path):
    fn = lambda ids, xs: [{"x": x, "words": ["a b", "c"]} for x in xs]  # noqa: E731
    run_sharded(list(range(5)), fn, tmp_path, shard="0/2", chunk_size=2)  # chunks [0,2) and [2,4)
    assert unfinished_items(tmp_path) == 1
    count_words = lambda rows: {"words": sum(len(r["words"]) for r in rows)}  # noqa: E731
    assert work_by_shard(tmp_path, count_words) == [{"shard": "0/2", "chunks": 2, "items": 4, "words": 8}]
    run_sharded(list(range(5)), fn, tmp_path, shard="1/2", chunk_size=2)
    assert unfinished_items(tmp_path) == 0
    assert [(w["shard"], w["items"]) for w in work_by_shard(tmp_path)] == [("0/2", 4), ("1/2", 1)]


def test_an_executor_runs_the_unfinished_chunks_and_this_process_writes_them(tmp_path):
    class Executor:  # what RayChunkExecutor does, in process: results in completion order (here reversed)
        def __init__(self):
            self.jobs = []

        def map(self, jobs):
            self.jobs = jobs
            return [(ids, [{"x": x * 10} for x in xs]) for ids, xs in reversed(jobs)]

    executor = Executor()
    rows = run_sharded(list(range(5)), None, tmp_path, chunk_size=2, executor=executor)
    assert [r["x"] for r in rows] == [0, 10, 20, 30, 40]  # in id order, whatever the completion order
    assert [ids for ids, _ in executor.jobs] == [[0, 1], [2, 3], [4]]
    again = Executor()
    assert run_sharded(list(range(5)), None, tmp_path, chunk_size=2, executor=again) == rows
    assert again.jobs == []  # every chunk file was written by this process: nothing left to send
