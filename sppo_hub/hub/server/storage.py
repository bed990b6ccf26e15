"""Git storage for the local Hub: one bare repository per Hub repo, written through dulwich.

Layout under the data dir: `{type}s/{namespace}/{name}.git` (bare git repo, plus `hub.json` with
the repo's settings) and `lfs/{oid[:2]}/{oid}` (LFS objects, content-addressed by sha256).

Commits are atomic: new blobs, trees and the commit object are written first; the branch ref is
moved last with a compare-and-swap, under a per-repo lock. A process killed mid-commit leaves only
unreferenced objects behind (and maybe a stale `.lock` file, which `locks` recovers), so readers
never see half a commit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.file import FileLocked
from dulwich.index import commit_tree
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo

from . import locks
from .lfs import GITATTRIBUTES, lfs_pointer, lfs_rules, matches_lfs, parse_lfs_pointer
from .validation import HubError, check_path, validate_repo_id

__all__ = ["HubError", "HubRepo", "Storage", "check_path", "validate_repo_id", "lfs_rules", "matches_lfs",
           "lfs_pointer", "parse_lfs_pointer"]

REPO_TYPES = ("model", "dataset", "space")
FILE_MODE = 0o100644


@dataclass
class Entry:
    """One file or folder of a tree, as the Hub's tree / paths-info API describes it."""

    path: str
    type: str  # "file" | "directory"
    oid: str
    size: int = 0
    lfs: dict | None = None

    def to_json(self) -> dict:
        out = {"type": self.type, "oid": self.oid, "size": self.size, "path": self.path}
        if self.lfs:
            out["lfs"] = self.lfs
        return out


@dataclass
class HubRepo:
    """A Hub repo backed by a bare git repository."""

    repo_type: str
    repo_id: str
    path: Path
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    started: float = 0.0  # when this server took the data dir: lock files older than this are stale

    @property
    def git(self) -> Repo:
        return Repo(str(self.path))

    @property
    def settings(self) -> dict:
        return json.loads((self.path / "hub.json").read_text())

    def update_settings(self, **values) -> None:
        _write_json_atomic(self.path / "hub.json", {**self.settings, **values})

    # -- refs ---------------------------------------------------------------------------------
    def refs(self) -> dict[str, dict[str, str]]:
        """{"branches": {name: sha}, "tags": {name: sha}} (tags peeled to their commit)."""
        git = self.git
        out: dict[str, dict[str, str]] = {"branches": {}, "tags": {}}
        for ref, sha in git.get_refs().items():
            ref_s = ref.decode()
            for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
                if ref_s.startswith(prefix):
                    obj = git[sha]
                    while isinstance(obj, Tag):
                        obj = git[obj.object[1]]
                    out[kind][ref_s[len(prefix):]] = obj.id.decode()
        return out

    def resolve(self, revision: str) -> str:
        """Commit sha for a branch, tag or (full or short) commit id; 404 RevisionNotFound otherwise."""
        refs = self.refs()
        for kind in ("branches", "tags"):
            if revision in refs[kind]:
                return refs[kind][revision]
        for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if revision.startswith(prefix) and revision[len(prefix):] in refs[kind]:
                return refs[kind][revision[len(prefix):]]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            git = self.git
            if len(revision) == 40 and revision.encode() in git.object_store:
                if isinstance(git[revision.encode()], Commit):
                    return revision
            for sha in self.history_all():
                if sha.startswith(revision):
                    return sha
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history_all(self) -> list[str]:
        refs = self.refs()
        seen: dict[str, None] = {}
        for sha in {*refs["branches"].values(), *refs["tags"].values()}:
            for c in self.history(sha):
                seen.setdefault(c["id"], None)
        return list(seen)

    def history(self, commit_sha: str) -> list[dict]:
        """Commits reachable from `commit_sha`, newest first, in the Hub's commit JSON shape."""
        git = self.git
        out = []
        for entry in git.get_walker(include=[commit_sha.encode()]):
            c = entry.commit
            title, _, message = c.message.decode().partition("\n\n")
            out.append({
                "id": c.id.decode(),
                "title": title.strip(),
                "message": message.strip(),
                "authors": [{"user": c.author.decode().split(" <")[0], "avatar": None}],
                "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(c.commit_time)),
            })
        return out

    def set_ref(self, ref: str, new: str | None, old: str | None = None) -> None:
        """Create/move (`new`) or delete (`new=None`) a ref; with `old`, only if it still points there.

        Under the repo's lock; a racing update of the same ref answers 409, never a lock-file error.
        """
        name, old_b = ref.encode(), (old.encode() if old else None)
        with self.lock:
            git = self.git
            if new is None:
                ok = self.locked_write(lambda: git.refs.remove_if_equals(name, old_b))
            elif old is None:
                ok = self.locked_write(lambda: git.refs.add_if_new(name, new.encode()))
            else:
                ok = self.locked_write(lambda: git.refs.set_if_equals(name, old_b, new.encode()))
        if not ok:
            kind = "Tag" if ref.startswith("refs/tags/") else "Branch"
            raise HubError(409, f"{kind} {ref.split('/', 2)[-1]!r} was created or moved concurrently; "
                                "fetch the refs and retry.")

    def locked_write(self, write):
        """Run a git write, recovering a stale `.lock` file it runs into (see `locks`); caller holds `self.lock`."""
        for _attempt in range(3):
            try:
                return write()
            except FileLocked as err:
                locks.recover_lock(err.lockfilename, self.started)
        raise HubError(503, "The repository is locked by another process; retry in a few seconds.")

    # -- trees --------------------------------------------------------------------------------
    def files(self, commit_sha: str) -> dict[str, tuple[int, bytes]]:
        """{path: (mode, blob sha)} of every file in a commit."""
        git = self.git
        tree = git[commit_sha.encode()].tree
        return {e.path.decode(): (e.mode, e.sha) for e in iter_tree_contents(git.object_store, tree)}

    def entry(self, commit_sha: str, path: str) -> Entry | None:
        """The file or folder at `path` ("" is the root), or None."""
        git = self.git
        tree_id = git[commit_sha.encode()].tree
        if path:
            try:
                _mode, sha = git[tree_id].lookup_path(git.object_store.__getitem__, path.encode())
            except KeyError:
                return None
        else:
            sha = tree_id
        obj = git[sha]
        if isinstance(obj, Tree):
            return Entry(path, "directory", sha.decode())
        return self._blob_entry(path, obj)

    def _blob_entry(self, path: str, blob: Blob) -> Entry:
        data = blob.as_raw_string()
        pointer = parse_lfs_pointer(data)
        if pointer:
            lfs = {"oid": pointer[0], "size": pointer[1], "pointerSize": len(data)}
            return Entry(path, "file", blob.id.decode(), pointer[1], lfs)
        return Entry(path, "file", blob.id.decode(), len(data))

    def list_tree(self, commit_sha: str, path: str, recursive: bool) -> list[Entry]:
        root = self.entry(commit_sha, path)
        if root is None or root.type != "directory":
            raise HubError(404, f"Folder {path!r} not found", "EntryNotFound")
        git = self.git
        out = []
        prefix = f"{path}/" if path else ""
        entries = iter_tree_contents(git.object_store, root.oid.encode(), include_trees=True) if recursive \
            else [e.in_path(b"") for e in git[root.oid.encode()].iteritems()]
        for e in entries:
            if not e.path:
                continue
            full = prefix + e.path.decode()
            obj = git[e.sha]
            out.append(Entry(full, "directory", e.sha.decode()) if isinstance(obj, Tree)
                       else self._blob_entry(full, obj))
        return out

    def lfs_rules(self, commit_sha: str | None) -> list[tuple[str, bool]]:
        """The LFS rules of the .gitattributes at `commit_sha` (none without a commit or the file)."""
        entry = self.entry(commit_sha, ".gitattributes") if commit_sha else None
        if entry is None or entry.type != "file" or entry.lfs:
            return []
        return lfs_rules(self.read_blob(entry.oid).decode("utf-8", "replace"))

    def read_blob(self, sha: str) -> bytes:
        return self.git[sha.encode()].as_raw_string()

    # -- writing ------------------------------------------------------------------------------
    def commit(self, branch: str, parent: str | None, changes: dict[str, bytes | None],
               deleted_folders: list[str], summary: str, description: str, author: str) -> str:
        """Write one commit on `branch` (files: path -> content, None deletes); return its sha.

        Objects are written first; the ref moves last (compare-and-swap on `parent`).
        """
        for path in [*changes, *(f.strip("/") for f in deleted_folders if f.strip("/"))]:
            check_path(path)
        if not changes and not deleted_folders:
            raise HubError(400, "Empty commit: it has no file to add, change or delete.")
        git = self.git
        files = self.files(parent) if parent else {}
        for folder in deleted_folders:
            folder = folder.strip("/")
            if not folder:
                raise HubError(400, "deletedFolder of the repo root: delete the repo instead, or name a folder.")
            gone = [p for p in files if p == folder or p.startswith(folder + "/")]
            if not gone:
                raise HubError(404, f"Folder {folder!r} does not exist in {branch}", "EntryNotFound")
            for p in gone:
                del files[p]
        for path, content in changes.items():
            if content is None:
                if path not in files:
                    raise HubError(404, f"File {path!r} does not exist in {branch}", "EntryNotFound")
                del files[path]
            else:
                blob = Blob.from_string(content)
                self.locked_write(lambda b=blob: git.object_store.add_object(b))
                files[path] = (FILE_MODE, blob.id)
        ordered = sorted(files)
        for a, b in zip(ordered, ordered[1:]):
            if b.startswith(a + "/"):
                raise HubError(400, f"{a!r} is a file and would also be a folder (for {b!r}): delete one of them.")
        tree_id = self.locked_write(lambda: commit_tree(
            git.object_store, [(p.encode(), s, m) for p, (m, s) in sorted(files.items())]))
        c = Commit()
        c.tree = tree_id
        c.parents = [parent.encode()] if parent else []
        c.author = c.committer = f"{author} <{author}@local-hub>".encode()
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.message = (summary + ("\n\n" + description if description else "")).encode()
        self.locked_write(lambda: git.object_store.add_object(c))
        self.set_ref(f"refs/heads/{branch}", c.id.decode(), parent)
        return c.id.decode()


_LOCKS_GUARD = threading.Lock()
_REPO_LOCKS: dict[str, dict[tuple[str, str], threading.RLock]] = {}


class Storage:
    """All repos and LFS objects under one data dir (owned by this process while open: see `locks`)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.recovered: list[Path] = []
        if locks.acquire_data_dir(self.root):  # first server of this process on it: the writers before are gone
            self.recovered = locks.clear_stale_locks(self.root)
            # Leftovers of uploads or repo creations cut short by a crash: never referenced, safe to drop.
            shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        key = os.path.realpath(self.root)
        with _LOCKS_GUARD:
            self._locks = _REPO_LOCKS.setdefault(key, {})  # shared by this process's servers of this dir
        self._guard = _LOCKS_GUARD
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            locks.release_data_dir(self.root)

    def _path(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}: use one of {REPO_TYPES}.")
        ns, name = validate_repo_id(repo_id)
        return self.root / f"{repo_type}s" / ns / f"{name}.git"

    def get(self, repo_type: str, repo_id: str) -> HubRepo:
        path = self._path(repo_type, repo_id)
        if not (path / "hub.json").exists():
            raise HubError(404, f"Repository {repo_type}s/{repo_id} not found", "RepoNotFound")
        with self._guard:
            lock = self._locks.setdefault((repo_type, repo_id), threading.RLock())
        return HubRepo(repo_type, repo_id, path, lock, self.started)

    def create(self, repo_type: str, repo_id: str, private: bool, author: str, **settings) -> HubRepo:
        """Create a repo with an initial commit (.gitattributes), as the Hub does; 409 if it exists."""
        path = self._path(repo_type, repo_id)
        if (path / "hub.json").exists():
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
        staging = self.root / "tmp" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        git = Repo.init_bare(str(staging), default_branch=b"main")
        _write_json_atomic(staging / "hub.json", {
            "private": bool(private), "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            **settings,
        })
        git.close()
        repo = HubRepo(repo_type, repo_id, staging)
        repo.commit("main", None, {".gitattributes": GITATTRIBUTES.encode()}, [], "initial commit", "", author)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, path)  # the repo appears whole or not at all
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}") from err
        return self.get(repo_type, repo_id)

    def delete(self, repo_type: str, repo_id: str) -> None:
        repo = self.get(repo_type, repo_id)
        trash = self.root / "tmp" / f"deleted-{uuid.uuid4().hex}"
        os.rename(repo.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def move(self, repo_type: str, from_id: str, to_id: str) -> None:
        repo = self.get(repo_type, from_id)
        target = self._path(repo_type, to_id)
        if target.exists():
            raise HubError(409, f"Repository {to_id} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(repo.path, target)

    def list(self, repo_type: str) -> list[str]:
        base = self.root / f"{repo_type}s"
        return sorted(f"{p.parent.name}/{p.name[:-4]}" for p in base.glob("*/*.git") if (p / "hub.json").exists())

    # -- LFS objects --------------------------------------------------------------------------
    def lfs_path(self, oid: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise HubError(400, f"Invalid LFS oid {oid!r}: expected 64 lowercase hex digits (sha256).")
        return self.root / "lfs" / oid[:2] / oid

    def new_tmp_file(self) -> Path:
        return self.root / "tmp" / f"upload-{uuid.uuid4().hex}"


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
