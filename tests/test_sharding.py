"""Shard parsing and slicing, atomic chunk files, resume after a failure, and the checked merge."""

from __future__ import annotations

import json

import pytest

from sppo_hub.sharding import (
    Shard,
    chunk_ranges,
    merge_chunks,
    missing_shards,
    parse_shard,
    run_sharded,
    shard_range,
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
    with pytest.raises(ValueError, match=r"shard 1/3 \(3 of 3 items unfinished, ids 3\.\.5\)"):
        merge_chunks(tmp_path)
    run_sharded(items, fn, tmp_path, shard="1/3", chunk_size=2)
    assert [r["x"] for r in merge_chunks(tmp_path)] == [x * 10 for x in items]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["num_items"] == 9


def test_merge_without_a_run_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the stage with --out"):
        merge_chunks(tmp_path)
