"""Git storage for the local Hub: one bare repository per Hub repo, written through dulwich.

Layout under the data dir: `{type}s/{namespace}/{name}.git` (bare git repo, plus `hub.json` with
the repo's settings) and `lfs/{oid[:2]}/{oid}` (LFS objects, content-addressed by sha256).

Commits are atomic: new blobs, trees and the commit object are written first; the branch ref is
moved last with a compare-and-swap, under a per-repo lock. A process killed mid-commit leaves only
unreferenced objects behind, so readers never see half a commit.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.index import commit_tree
from dulwich.object_store import iter_tree_contents
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo

REPO_TYPES = ("model", "dataset", "space")
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
FILE_MODE = 0o100644
# Patterns written into a new repo's .gitattributes, like the Hub's default: preupload answers "lfs"
# for paths matching them (and for any file of 10 MB or more), so binaries never go inline.
GITATTRIBUTES = "".join(
    f"{p} filter=lfs diff=lfs merge=lfs -text\n"
    for p in ("*.bin", "*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.parquet",
              "*.arrow", "*.gguf", "*.msgpack", "*.npy", "*.npz", "*.zip", "*.tar.gz", "*.png")
)


class HubError(Exception):
    """An error with an HTTP status and (optionally) the Hub's X-Error-Code header value."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def validate_repo_id(repo_id: str) -> tuple[str, str]:
    """Split `namespace/name`, raising a 400 HubError that says what a valid id looks like."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts) or any(
        "--" in p or ".." in p for p in parts
    ):
        raise HubError(
            400,
            f"Invalid repo id {repo_id!r}: use 'namespace/name' with letters, digits, '-', '_', '.' "
            "(at most 96 characters each, no '--' or '..', not starting or ending with '-' or '.').",
        )
    return parts[0], parts[1]


def check_path(path: str) -> None:
    """Reject paths a git tree cannot hold or that escape the repo."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts) or "\x00" in path:
        raise HubError(400, f"Invalid path in repo {path!r}: use a relative path like 'folder/file.txt' "
                            "(no empty, '.', '..' or '.git' parts).")


def lfs_rules(gitattributes: str) -> list[tuple[str, bool]]:
    """(pattern, is_lfs) for each .gitattributes line that sets or unsets the `filter` attribute."""
    rules = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        for attr in fields[1:]:
            if attr == "filter=lfs":
                rules.append((fields[0], True))
            elif attr in ("-filter", "!filter") or attr.startswith("filter="):
                rules.append((fields[0], False))
    return rules


def matches_lfs(path: str, rules: list[tuple[str, bool]]) -> bool:
    """Whether `path` gets `filter=lfs` from `rules` (git's rule: the last matching line wins).

    A pattern without '/' matches the file name at any depth; one with '/' matches the whole path
    from the repo root ('**/' and '/**' as in git, '*' otherwise also crossing '/': close enough here).
    """
    name = path.rsplit("/", 1)[-1]
    result = False
    for pattern, is_lfs in rules:
        pat = pattern.lstrip("/")
        if "/" not in pattern:
            hit = fnmatch.fnmatchcase(name, pat)
        elif pat.startswith("**/"):
            hit = fnmatch.fnmatchcase(path, pat[3:]) or fnmatch.fnmatchcase(path, pat)
        else:
            hit = fnmatch.fnmatchcase(path, pat)
        if hit:
            result = is_lfs
    return result


def lfs_pointer(oid: str, size: int) -> bytes:
    return LFS_POINTER_PREFIX + f"oid sha256:{oid}\nsize {size}\n".encode()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) when `data` is a git-lfs pointer file, else None."""
    if not data.startswith(LFS_POINTER_PREFIX) or len(data) > 512:
        return None
    fields = dict(line.split(" ", 1) for line in data.decode().splitlines()[1:] if " " in line)
    try:
        return fields["oid"].removeprefix("sha256:"), int(fields["size"])
    except (KeyError, ValueError):
        return None


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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
        """Create/move (`new`) or delete (`new=None`) a ref; with `old`, only if it still points there."""
        git = self.git
        name, old_b = ref.encode(), (old.encode() if old else None)
        if new is None:
            ok = git.refs.remove_if_equals(name, old_b)
        elif old is None:
            ok = git.refs.add_if_new(name, new.encode())
        else:
            ok = git.refs.set_if_equals(name, old_b, new.encode())
        if not ok:
            raise HubError(409, f"Reference {ref} was updated concurrently; retry.")

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
        git = self.git
        files = self.files(parent) if parent else {}
        for folder in deleted_folders:
            folder = folder.strip("/")
            gone = [p for p in files if folder == "" or p == folder or p.startswith(folder + "/")]
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
                git.object_store.add_object(blob)
                files[path] = (FILE_MODE, blob.id)
        ordered = sorted(files)
        for a, b in zip(ordered, ordered[1:]):
            if b.startswith(a + "/"):
                raise HubError(400, f"{a!r} is a file and would also be a folder (for {b!r}): delete one of them.")
        tree_id = commit_tree(git.object_store, [(p.encode(), s, m) for p, (m, s) in sorted(files.items())])
        c = Commit()
        c.tree = tree_id
        c.parents = [parent.encode()] if parent else []
        c.author = c.committer = f"{author} <{author}@local-hub>".encode()
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.message = (summary + ("\n\n" + description if description else "")).encode()
        git.object_store.add_object(c)
        self.set_ref(f"refs/heads/{branch}", c.id.decode(), parent)
        return c.id.decode()


class Storage:
    """All repos and LFS objects under one data dir."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        # Leftovers of uploads or repo creations cut short by a crash: never referenced, safe to drop.
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

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
            lock = self._locks.setdefault((repo_type, repo_id), threading.Lock())
        return HubRepo(repo_type, repo_id, path, lock)

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
