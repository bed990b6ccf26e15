"""Store each published file once on disk: the run folder and the Hub download cache hard-link the local Hub's copy.

With `--local-hub`, an iteration's checkpoint exists three times: the run folder's `iter<t>/model` (what
training saved), the local Hub's LFS store (what was published) and the download cache's snapshot (what the
next iteration reads back). The three have the same bytes, so after a verified publish each large file is
replaced by a hard link to the Hub's object (`<hub>/lfs/<oid[:2]>/<oid>`, named by its sha256): the folders
stay complete and readable, the disk holds one copy. Links are made only where the object's size and sha256
match; on another filesystem (no hard links) the files are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...hub.publish import file_sha256

MIN_BYTES = 64 << 10  # cards and configs are small: weights (and other LFS files) are worth linking


def local_hub_data_dir(run_dir: str | Path) -> Path:
    """Where `--local-hub` keeps the run's Hub: <run dir>/hub (as `run --help` says), or $SPPO_HUB_LOCAL_DIR."""
    import os

    return Path(os.environ.get("SPPO_HUB_LOCAL_DIR") or Path(run_dir) / "hub")


def lfs_object(hub_dir: str | os.PathLike, oid: str) -> Path:
    """Where the local Hub keeps the LFS object of sha256 `oid`."""
    return Path(hub_dir) / "lfs" / oid[:2] / oid


def link_file(path: Path, target: Path) -> int:
    """Replace `path` by a hard link to `target` (same bytes); returns the bytes freed (0 when not linked)."""
    if not target.is_file() or path.stat().st_size != target.stat().st_size:
        return 0
    if os.path.samefile(path, target):
        return 0
    tmp = path.with_name(f".{path.name}.link-{os.getpid()}")
    try:
        os.link(target, tmp)
    except OSError:  # another filesystem, or links not allowed: keep the copy
        return 0
    size = path.stat().st_size
    os.replace(tmp, path)  # atomic: readers see the old file or the link, never neither
    return size


def link_folder_to_hub(folder: str | os.PathLike, hub_dir: str | os.PathLike) -> int:
    """Hard-link every large file of `folder` (e.g. a checkpoint just published) to the Hub's object with its sha256."""
    freed = 0
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= MIN_BYTES:
            freed += link_file(path, lfs_object(hub_dir, file_sha256(path)))
    return freed


def link_snapshot_to_hub(snapshot: str | os.PathLike, hub_dir: str | os.PathLike) -> int:
    """Hard-link a huggingface_hub cache snapshot's large blobs (named by their sha256) to the Hub's objects."""
    freed = 0
    blobs = Path(snapshot).resolve().parents[1] / "blobs"  # <cache>/models--org--name/snapshots/<sha> -> blobs/
    if not blobs.is_dir():
        return 0
    for blob in blobs.iterdir():
        if len(blob.name) == 64 and blob.is_file() and blob.stat().st_size >= MIN_BYTES:
            freed += link_file(blob, lfs_object(hub_dir, blob.name))
    return freed


def local_hub_dir(ctx) -> Path | None:
    """The store of the local Hub this run started (`--local-hub`), or None when publishing elsewhere."""
    from ...hub.endpoint import is_local_endpoint

    cfg = ctx.config
    if not (cfg.publish.enabled and cfg.publish.local_hub and ctx.endpoint and is_local_endpoint(ctx.endpoint)):
        return None
    path = local_hub_data_dir(ctx.run_dir)  # where run_from_config started it
    return path if (path / "lfs").is_dir() else None
