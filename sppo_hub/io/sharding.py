"""Sharded, resumable stages: `--shard i/n`, per-chunk files written atomically, and a checked merge.

Generation and judging both walk a list of items (prompt ids 0..N-1) in chunks of `chunk_size`
consecutive ids. The chunk grid is global (chunk c holds ids c*chunk_size ..), and `--shard i/n`
(0-based, i < n) gives worker i the i-th contiguous slice of that grid's chunks. A chunk is
therefore the same unit of work whether it runs in 1, 2 or 3 workers: its seeds and batches, and so
its output, do not depend on n, and the merged result of n workers equals a single-process run.
Each finished chunk is written as one JSON file (temp file + rename), so a run killed midway keeps
every finished chunk and a rerun redoes only the unfinished ones. A `manifest.json` in the output
folder fingerprints the run (item count, chunk size, settings): a rerun with other settings is
refused instead of silently mixing results. `merge_chunks` checks every item is covered exactly
once and names the missing shards otherwise.

Written by hand: no library in the stack shards an arbitrary Python loop with atomic chunk files
(`datasets.Dataset.shard` slices data but neither persists nor resumes work).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

MANIFEST = "manifest.json"
CHUNKS_DIR = "chunks"
_CHUNK_RE = re.compile(r"^chunk-(\d+)-(\d+)\.json$")
_SHARD_DIR_RE = re.compile(r"^shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    """Slice `index` (0-based) of `count` equal contiguous slices."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard: index must satisfy 0 <= i < n, got {self.index}/{self.count}; "
                f"use --shard i/n with i in 0..n-1 (e.g. 0/{max(self.count, 2)})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def dirname(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"


def parse_shard(spec: "str | Shard | tuple[int, int] | None") -> Shard:
    """`"i/n"` (0-based), a `(i, n)` tuple, a `Shard` or None (the whole range) -> `Shard`."""
    if spec is None:
        return Shard()
    if isinstance(spec, Shard):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return Shard(int(spec[0]), int(spec[1]))
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not match:
        raise ValueError(f"shard: expected 'i/n' with 0 <= i < n (e.g. 0/4), got {spec!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_range(num_items: int, shard: Shard, chunk_size: int = 1) -> range:
    """The shard's contiguous slice of 0..num_items-1, made of whole chunks of the global chunk grid.

    The grid's chunks are split as evenly as possible (counts differ by at most one); with
    `chunk_size=1` that is an even split of the items.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
    num_chunks = -(-int(num_items) // int(chunk_size))
    base, extra = divmod(num_chunks, shard.count)
    first = shard.index * base + min(shard.index, extra)
    last = first + base + (1 if shard.index < extra else 0)
    return range(min(first * chunk_size, num_items), min(last * chunk_size, num_items))


def chunk_ranges(ids: range, chunk_size: int) -> list[range]:
    """Split a range into consecutive chunks of at most `chunk_size` ids."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1, got {chunk_size}")
    return [range(s, min(s + chunk_size, ids.stop)) for s in range(ids.start, ids.stop, chunk_size)]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _chunk_path(out_dir: Path, shard: Shard, chunk: range) -> Path:
    return Path(out_dir) / CHUNKS_DIR / shard.dirname / f"chunk-{chunk.start:08d}-{chunk.stop:08d}.json"


class ChunkStore:
    """Chunk files of one sharded stage under `out_dir/chunks/shard-i-of-n/chunk-a-b.json`."""

    def __init__(self, out_dir: str | Path, num_items: int, fingerprint: dict | None = None, chunk_size: int = 1):
        self.out_dir = Path(out_dir)
        self.num_items = int(num_items)
        self.chunk_size = int(chunk_size)
        self.fingerprint = dict(fingerprint or {})
        self._check_manifest()

    def _check_manifest(self) -> None:
        path = self.out_dir / MANIFEST
        current = {"num_items": self.num_items, "chunk_size": self.chunk_size, "fingerprint": self.fingerprint}
        if path.exists():
            old = json.loads(path.read_text())
            if old != json.loads(json.dumps(current)):
                diffs = [k for k in set(old.get("fingerprint", {})) | set(self.fingerprint)
                         if old.get("fingerprint", {}).get(k) != self.fingerprint.get(k)]
                for key in ("num_items", "chunk_size"):
                    if old.get(key) != current[key]:
                        diffs.append(f"{key} ({old.get(key)} -> {current[key]})")
                raise ValueError(
                    f"out_dir: {self.out_dir} holds a run with other settings (differs in: "
                    f"{', '.join(sorted(map(str, set(diffs))))}); use a new --out folder or delete this one"
                )
        else:
            # Several workers may start at once: each writes the same content atomically.
            atomic_write_json(path, current)

    def chunk_path(self, shard: Shard, chunk: range) -> Path:
        return _chunk_path(self.out_dir, shard, chunk)

    def done_path(self, shard: Shard, chunk: range) -> Path | None:
        """This chunk's file, written by this shard or by a run with another shard count (same grid)."""
        own = self.chunk_path(shard, chunk)
        if own.exists():
            return own
        return next(iter(sorted((self.out_dir / CHUNKS_DIR).glob(f"shard-*/{own.name}"))), None)

    def write(self, shard: Shard, chunk: range, rows: list[dict]) -> None:
        if len(rows) != len(chunk):
            raise ValueError(f"chunk {chunk.start}-{chunk.stop}: got {len(rows)} rows for {len(chunk)} items")
        atomic_write_json(self.chunk_path(shard, chunk), {"ids": list(chunk), "rows": rows})

    @staticmethod
    def read(path: Path) -> list[dict]:
        return json.loads(path.read_text(encoding="utf-8"))["rows"]


def run_sharded(
    items: Sequence[Any],
    process: Callable[[list[int], list[Any]], list[dict]] | None,
    out_dir: str | Path | None,
    shard: "Shard | str | None" = None,
    chunk_size: int = 64,
    fingerprint: dict | None = None,
    desc: str = "chunks",
    show_progress: bool = True,
    executor: Any = None,
) -> list[dict]:
    """Run `process(ids, items)` over this shard's chunks and return the shard's rows in id order.

    With `out_dir`, finished chunks are read back instead of recomputed and every new chunk is
    saved as soon as it is done; without it, everything stays in memory. `show_progress=False`
    prints nothing (no bar, no resume note). `executor` (e.g. `io.ray_executor.RayChunkExecutor`) runs the
    unfinished chunks elsewhere instead of `process`: its `map(jobs)` yields (ids, rows) as chunks finish,
    and this process writes each chunk file as it arrives.
    """
    shard = parse_shard(shard)
    chunks = chunk_ranges(shard_range(len(items), shard, chunk_size), chunk_size)
    store = ChunkStore(out_dir, len(items), fingerprint, chunk_size) if out_dir is not None else None
    done = {c.start: store.done_path(shard, c) for c in chunks} if store is not None else {}
    todo = [c for c in chunks if done.get(c.start) is None]
    if show_progress and len(todo) < len(chunks):
        tqdm.write(f"{desc}: resuming shard {shard}, {len(chunks) - len(todo)} of {len(chunks)} chunks already done",
                   file=sys.stderr)
    by_start = {c.start: store.read(path) for c in chunks if (path := done.get(c.start)) is not None}
    jobs = [(list(c), [items[i] for i in c]) for c in todo]
    results = executor.map(jobs) if executor is not None else ((ids, process(ids, batch)) for ids, batch in jobs)
    # A bar of one chunk says nothing the processor's own bar (prompts, pairs) does not: two nested bars would.
    # On an executor the processors' own bars stay silent (they run elsewhere): the chunk bar is the display.
    with tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc=f"{desc} (shard {shard})", unit="chunk",
              leave=False, disable=not show_progress or (len(todo) <= 1 and executor is None)) as bar:
        for ids, new in results:
            chunk = range(ids[0], ids[-1] + 1)
            if store is not None:
                store.write(shard, chunk, new)
            by_start[chunk.start] = new
            bar.update(1)
    return [row for c in chunks for row in by_start[c.start]]


def missing_shards(out_dir: str | Path) -> tuple[int, list[str]]:
    """(num_items, descriptions of what is missing) for a sharded output folder."""
    out_dir = Path(out_dir)
    meta = _read_manifest(out_dir)
    num_items, chunk_size = int(meta["num_items"]), int(meta.get("chunk_size", 1))
    covered = _collect(out_dir)
    done = _covered_ids(covered)
    problems = []
    for count in sorted({n for (_, n) in covered} or {1}):
        for index in range(count):
            shard = Shard(index, count)
            ids = shard_range(num_items, shard, chunk_size)
            left = [i for i in ids if i not in done]
            if left:
                problems.append(f"shard {shard} ({len(left)} of {len(ids)} items unfinished, ids {left[0]}..{left[-1]})")
    return num_items, problems


def _read_manifest(out_dir: Path) -> dict:
    if not (out_dir / MANIFEST).exists():
        raise FileNotFoundError(f"out_dir: {out_dir} has no {MANIFEST}; run the stage with --out {out_dir} first")
    return json.loads((out_dir / MANIFEST).read_text())


def _covered_ids(covered: dict[tuple[int, int], list[range]]) -> set[int]:
    return {i for chunks in covered.values() for c in chunks for i in c}


def _collect(out_dir: Path) -> dict[tuple[int, int], list[range]]:
    found: dict[tuple[int, int], list[range]] = {}
    root = out_dir / CHUNKS_DIR
    if not root.is_dir():
        return found
    for shard_dir in sorted(root.iterdir()):
        m = _SHARD_DIR_RE.match(shard_dir.name)
        if not m:
            continue
        for f in sorted(shard_dir.iterdir()):
            c = _CHUNK_RE.match(f.name)
            if c:
                found.setdefault((int(m.group(1)), int(m.group(2))), []).append(range(int(c.group(1)), int(c.group(2))))
    return found


def unfinished_items(out_dir: str | Path) -> int:
    """How many items of a sharded output folder no chunk file covers yet (under any shard count)."""
    out_dir = Path(out_dir)
    num_items = int(_read_manifest(out_dir)["num_items"])
    return num_items - len(_covered_ids(_collect(out_dir)) & set(range(num_items)))


def work_by_shard(out_dir: str | Path, measure: Callable[[list[dict]], dict] | None = None) -> list[dict]:
    """[{shard: "i/n", chunks, items, **measure(rows)}] of the chunk files each worker wrote, in this session or
    an earlier one; `measure` adds totals over that shard's rows (e.g. tokens generated)."""
    out_dir = Path(out_dir)
    work = []
    for (index, count), chunks in sorted(_collect(out_dir).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        shard = Shard(index, count)
        entry = {"shard": str(shard), "chunks": len(chunks), "items": sum(len(c) for c in chunks)}
        if measure is not None:
            entry.update(measure([row for c in chunks for row in ChunkStore.read(_chunk_path(out_dir, shard, c))]))
        work.append(entry)
    return work


def merge_chunks(out_dir: str | Path) -> list[dict]:
    """Every chunk's rows in id order; raises listing the missing shards unless all ids are covered once."""
    out_dir = Path(out_dir)
    num_items, problems = missing_shards(out_dir)
    rows_by_id: dict[int, dict] = {}
    for (index, count), chunks in _collect(out_dir).items():
        for chunk in chunks:
            path = _chunk_path(out_dir, Shard(index, count), chunk)
            data = json.loads(path.read_text(encoding="utf-8"))
            for i, row in zip(data["ids"], data["rows"]):
                rows_by_id.setdefault(int(i), row)
    missing = [i for i in range(num_items) if i not in rows_by_id]
    if missing:
        detail = "; ".join(problems) if problems else f"ids {missing[:10]}"
        raise ValueError(
            f"merge: {out_dir} is incomplete, {len(missing)} of {num_items} items missing: {detail}. "
            "Run the missing shards with the same --out, then merge again"
        )
    return [rows_by_id[i] for i in range(num_items)]


def atomic_write_parquet(dataset, path: str | Path) -> Path:
    """`dataset.to_parquet` into a temp file beside `path`, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        dataset.to_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
