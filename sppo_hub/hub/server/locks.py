"""Crash recovery for the local Hub's git repos: data-dir ownership and stale lock files.

git (and dulwich) update a file by writing `NAME.lock` and renaming it over `NAME`; a process killed
between the two leaves the `.lock` behind, and every later update of that ref or object fails
("main.lock exists") until someone deletes it by hand. The local Hub owns its data dir (an exclusive
`flock` on `DIR/.local-hub.lock`, held while it runs, released by the kernel when it dies), and all
of its writes to one repo are serialised by one in-process lock. So:

- at start-up, when this process becomes the owner, every `*.lock` file in the repos is stale (its
  writer is gone) and is removed;
- later, a lock file met while holding the repo's lock is not this process's; it is removed when it
  is older than `STALE_AFTER_S` (an outside `git` left it), else the request answers 503, retry.

Written by hand: neither dulwich nor git offers lock recovery (git asks the user to delete the file).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path

from .validation import HubError

STALE_AFTER_S = 10.0
OWNER_FILE = ".local-hub.lock"

_guard = threading.Lock()
_owned: dict[str, list] = {}  # realpath of a data dir -> [fd, number of servers of this process using it]


class DataDirInUse(ValueError):
    """Another process serves this data dir."""


def acquire_data_dir(root: Path) -> bool:
    """Become (or join, within this process) the owner of `root`; True when this call took ownership.

    Raises DataDirInUse naming the other process when one holds it.
    """
    key = os.path.realpath(root)
    with _guard:
        if key in _owned:
            _owned[key][1] += 1
            return False
        fd = os.open(os.path.join(key, OWNER_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirInUse(f"data dir {root} is served by another local Hub (pid {other}): stop it, "
                                   "or use its URL, or pass another --data-dir") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _owned[key] = [fd, 1]
        return True


def release_data_dir(root: Path) -> None:
    key = os.path.realpath(root)
    with _guard:
        entry = _owned.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _owned[key]
            os.close(entry[0])  # closing the descriptor releases the flock


def repo_lock_files(repo_dir: Path) -> list[Path]:
    """`*.lock` files git or dulwich may leave in a bare repo (refs, packed-refs, objects, config)."""
    found = [p for p in (repo_dir / "refs").rglob("*.lock")] if (repo_dir / "refs").is_dir() else []
    for name in ("packed-refs.lock", "config.lock", "HEAD.lock", "index.lock", "shallow.lock"):
        if (repo_dir / name).exists():
            found.append(repo_dir / name)
    objects = repo_dir / "objects"
    if objects.is_dir():
        found += [p for p in objects.glob("??/*.lock")]
        found += [p for p in objects.glob("info/*.lock")]
    return found


def clear_stale_locks(root: Path) -> list[Path]:
    """Remove every lock file (and half-written settings file) in every repo under `root`.

    Only safe for the owner of `root` right after `acquire_data_dir` took ownership.
    """
    removed = []
    for type_dir in ("models", "datasets", "spaces"):
        for repo_dir in (root / type_dir).glob("*/*.git"):
            for path in [*repo_lock_files(repo_dir), *repo_dir.glob(".hub.json.*.tmp")]:
                try:
                    path.unlink()
                    removed.append(path)
                except FileNotFoundError:
                    pass
    for path in root.glob(".collections.*.tmp"):
        path.unlink(missing_ok=True)
    return removed


def recover_lock(lock_file: str | bytes, started: float) -> None:
    """Called with the repo's lock held, when a write met `lock_file`: remove it when it is stale
    (made before this server started, or older than STALE_AFTER_S), else answer 503."""
    path = Path(os.fsdecode(lock_file))
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return  # gone meanwhile: retry
    if mtime < started or time.time() - mtime > STALE_AFTER_S:
        path.unlink(missing_ok=True)
        return
    raise HubError(503, "The repository is being updated by another process (a git lock file is held); retry in a "
                        "few seconds.")
