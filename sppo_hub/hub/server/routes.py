"""Repo routes of the local Hub: create/delete/info, preupload, commit, tree, refs, resolve."""

from __future__ import annotations

import hashlib
import time

import yaml

from .lfs import lfs_pointer, matches_lfs
from .validation import (HubError, byte_range, check_path, check_ref_name, decode_file, field, parse_commit,
                         size_field, validate_repo_id)

LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's size above which a file must go to LFS
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def whoami(h) -> None:
    user = h.require_user()
    h.send(200, {
        "type": "user", "name": user, "fullname": user,
        "orgs": [{"type": "org", "name": org, "roleInOrg": "write"} for org in h.server.orgs],
        "auth": {"type": "access_token", "accessToken": {"displayName": "local-hub", "role": "write"}},
    })


def repo_url(h, repo_type: str, repo_id: str) -> str:
    return f"{h.base_url}/{_URL_PREFIX[repo_type]}{repo_id}"


def _target(h, body: dict, key: str = "name") -> tuple[str, str]:
    repo_type = field(body, "type", str, "model")
    name = field(body, key, str, "")
    org = field(body, "organization", str)
    user = h.require_user()
    repo_id = name if "/" in name else f"{org or user}/{name}"
    validate_repo_id(repo_id)
    return repo_type, repo_id


def create_repo(h) -> None:
    body = h.json_body()
    repo_type, repo_id = _target(h, body)
    user = h.require_write(repo_id.split("/")[0])
    private = body.get("visibility") == "private" or bool(body.get("private"))
    settings = {"sdk": body.get("sdk")} if repo_type == "space" else {}
    try:
        h.server.storage.create(repo_type, repo_id, private, user, **settings)
    except HubError as err:
        if err.status == 409:
            err.extra = {"url": repo_url(h, repo_type, repo_id)}
        raise
    h.send(200, {"url": repo_url(h, repo_type, repo_id), "name": repo_id})


def delete_repo(h) -> None:
    repo_type, repo_id = _target(h, h.json_body())
    h.require_write(repo_id.split("/")[0])
    h.server.storage.delete(repo_type, repo_id)
    h.send(200, {})


def move_repo(h) -> None:
    body = h.json_body()
    repo_type = field(body, "type", str, "model")
    src, dst = field(body, "fromRepo", str, ""), field(body, "toRepo", str, "")
    for rid in (src, dst):
        validate_repo_id(rid)
        h.require_write(rid.split("/")[0])
    h.server.storage.move(repo_type, src, dst)
    h.send(200, {})


def validate_yaml(h) -> None:
    """Checks the card's YAML parses to a mapping (the Hub's schema checks are not reproduced)."""
    body = h.json_body()
    content = field(body, "content", str, "")
    if content.startswith("---"):
        content = content.split("---", 2)[1] if content.count("---") >= 2 else content
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as err:
        raise HubError(400, f"Invalid YAML in the card's metadata: {err}") from err
    if data is not None and not isinstance(data, dict):
        raise HubError(400, "The card's metadata must be a YAML mapping (key: value).")
    h.send(200, {"errors": [], "warnings": []})


validate_yaml.anonymous = True  # read-only; huggingface_hub's RepoCard.validate sends no token


def list_repos(h, repo_type: str) -> None:
    author = h.query.get("author")
    search = h.query.get("search", "")
    out = []
    for rid in h.server.storage.list(repo_type):
        repo = h.server.storage.get(repo_type, rid)
        if (author and not rid.startswith(author + "/")) or search not in rid:
            continue
        if repo.settings.get("private") and h.identity() is None:
            continue
        out.append(_info(repo, repo.refs()["branches"].get("main")))
    h.send(200, out)


def repo_route(method: str, repo_type: str, repo_id: str, action: str, tail: list[str]):
    table = {
        ("GET", ""): (info, ()),
        ("GET", "revision"): (info, (tail[0] if tail else "main",)),
        ("POST", "preupload"): (preupload, (tail[0] if tail else "main",)),
        ("POST", "commit"): (commit, (tail[0] if tail else "main",)),
        ("GET", "tree"): (tree, (tail[0] if tail else "main", "/".join(tail[1:]))),
        ("POST", "paths-info"): (paths_info, (tail[0] if tail else "main",)),
        ("GET", "refs"): (refs, ()),
        ("GET", "commits"): (commits, (tail[0] if tail else "main",)),
        ("POST", "branch"): (create_branch, (tail[0] if tail else "",)),
        ("DELETE", "branch"): (delete_branch, (tail[0] if tail else "",)),
        ("POST", "tag"): (create_tag, (tail[0] if tail else "main",)),
        ("DELETE", "tag"): (delete_tag, (tail[0] if tail else "",)),
        ("PUT", "settings"): (update_settings, ()),
        ("GET", "xet-write-token"): (xet_token, ()),
        ("GET", "xet-read-token"): (xet_token, ()),
    }
    handler, args = table.get((method, action), (None, ()))
    if handler is None:
        return None, ()
    def serve(h, *a):
        return handler(h, _open(h, repo_type, repo_id), *a)

    serve.anonymous = handler is paths_info  # a read with a body: allowed without a token (public repos)
    return serve, args


def _open(h, repo_type: str, repo_id: str):
    return h.readable_repo(repo_type, repo_id)


def _writable(h, repo) -> str:
    return h.require_write(repo.repo_id.split("/")[0])


def _info(repo, sha: str | None) -> dict:
    files = repo.files(sha) if sha else {}
    card = {}
    if "README.md" in files:
        text = repo.read_blob(files["README.md"][1].decode()).decode(errors="replace")
        if text.startswith("---"):
            try:
                card = yaml.safe_load(text.split("---", 2)[1]) or {}
            except (yaml.YAMLError, IndexError):
                card = {}
    settings = repo.settings
    out = {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0], "sha": sha, "private": settings.get("private", False),
        "disabled": False, "gated": False, "downloads": 0, "likes": 0,
        "tags": list(card.get("tags") or []) if isinstance(card, dict) else [],
        "cardData": card if isinstance(card, dict) else {},
        "siblings": [{"rfilename": p} for p in sorted(files)],
        "createdAt": settings.get("createdAt"),
        "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(repo.git[sha.encode()].commit_time))
        if sha else settings.get("createdAt"),
    }
    if repo.repo_type == "model" and isinstance(card, dict):
        out["library_name"] = card.get("library_name")
        out["pipeline_tag"] = card.get("pipeline_tag")
    if repo.repo_type == "space":
        out["sdk"] = settings.get("sdk")
        out["runtime"] = {"stage": "STOPPED", "hardware": {"current": None, "requested": None}}
    return out


def info(h, repo, revision: str = "main") -> None:
    sha = repo.resolve(revision) if repo.refs()["branches"] or revision != "main" else None
    h.send(200, _info(repo, sha))


def preupload(h, repo, revision: str) -> None:
    """As the Hub: a file goes to LFS if it is >= 10 MB or its path matches an LFS pattern of the
    branch's .gitattributes (*.parquet, *.safetensors, ...); other files go inline in the commit.
    Clients that preupload and then drop the file (datasets' push_to_hub) rely on this.

    Marking a file "lfs" makes a client with hf_xet ask for a xet token; `use_endpoint` sets
    HF_HUB_DISABLE_XET for local endpoints so those files take the LFS basic-transfer path.
    """
    body = h.json_body()
    _writable(h, repo)
    branch = revision
    current = repo.refs()["branches"].get(branch)
    existing = repo.files(current) if current else {}
    rules = repo.lfs_rules(current)
    out = []
    for f in field(body, "files", list, []):
        if not isinstance(f, dict):
            raise HubError(400, "preupload 'files' must be a list of {path, size, sample} objects.")
        path, size = field(f, "path", str, required=True), size_field(f)
        check_path(path)
        mode = "lfs" if size >= LFS_THRESHOLD or matches_lfs(path, rules) else "regular"
        oid = None
        if path in existing:
            entry = repo.entry(current, path)
            oid = entry.lfs["oid"] if entry.lfs else entry.oid
        out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    h.send(200, {"files": out, "commitOid": current})


def commit(h, repo, revision: str) -> None:
    """Apply an ndjson commit atomically (objects first, ref last), honouring parentCommit."""
    raw = h.body()
    user = _writable(h, repo)
    if h.query.get("create_pr") in ("1", "true"):
        raise HubError(400, "The local Hub does not support pull requests: commit to a branch (create_pr=False).")
    header, operations = parse_commit(raw)
    changes, folders = {}, []
    for key, value in operations:
        if key == "file":
            changes[value["path"]] = decode_file(value)
        elif key == "lfsFile":
            changes[value["path"]] = _lfs_pointer_for(h, value)
        elif key == "deletedFile":
            changes[value["path"]] = None
        else:
            folders.append(value["path"])
    with repo.lock:
        branches = repo.refs()["branches"]
        if revision not in branches:
            raise HubError(404, f"Branch {revision!r} not found: create it first (create_branch).",
                           "RevisionNotFound")
        head = branches[revision]
        parent = header.get("parentCommit")
        if parent and parent != head:
            raise HubError(412, f"parentCommit {parent} is not the head of {revision} ({head}): "
                                "a commit happened in between; fetch the new head and retry.")
        sha = repo.commit(revision, head, changes, folders, header.get("summary") or "Commit",
                          header.get("description") or "", user)
    h.send(200, {"success": True, "commitOid": sha, "pullRequestUrl": None,
                 "commitUrl": f"{repo_url(h, repo.repo_type, repo.repo_id)}/commit/{sha}"})


def _lfs_pointer_for(h, value: dict) -> bytes:
    oid, size = field(value, "oid", str, required=True), size_field(value)
    path = h.server.storage.lfs_path(oid)
    if not path.exists() or path.stat().st_size != size:
        raise HubError(400, f"LFS object {oid} for {value['path']!r} was not uploaded: upload it first.")
    return lfs_pointer(oid, size)


def tree(h, repo, revision: str, path: str) -> None:
    sha = repo.resolve(revision)
    recursive = h.query.get("recursive", "").lower() in ("1", "true")
    h.send(200, [e.to_json() for e in repo.list_tree(sha, path.strip("/"), recursive)])


def paths_info(h, repo, revision: str) -> None:
    body = h.form_or_json()
    paths = body.get("paths") or []
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise HubError(400, "paths-info 'paths' must be a list of paths in the repo.")
    sha = repo.resolve(revision)
    out = [e.to_json() for p in paths if (e := repo.entry(sha, p.strip("/"))) is not None]
    h.send(200, out)


def refs(h, repo) -> None:
    r = repo.refs()
    h.send(200, {
        "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in r["branches"].items()],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in r["tags"].items()],
        "converts": [], "pullRequests": [],
    })


def commits(h, repo, revision: str) -> None:
    h.send(200, repo.history(repo.resolve(revision)))


def create_branch(h, repo, branch: str) -> None:
    body = h.json_body()
    _writable(h, repo)
    check_ref_name(branch)
    start = repo.resolve(field(body, "startingPoint", str) or "main")
    with repo.lock:
        if branch in repo.refs()["branches"]:
            raise HubError(409, f"Branch {branch!r} already exists")
        repo.set_ref(f"refs/heads/{branch}", start)
    h.send(200, {})


def delete_branch(h, repo, branch: str) -> None:
    _writable(h, repo)
    if branch == "main":
        raise HubError(403, "The main branch cannot be deleted.")
    current = repo.refs()["branches"].get(branch)
    if current is None:
        raise HubError(404, f"Branch {branch!r} not found", "RevisionNotFound")
    repo.set_ref(f"refs/heads/{branch}", None, current)
    h.send(200, {})


def create_tag(h, repo, revision: str) -> None:
    body = h.json_body()
    _writable(h, repo)
    tag = field(body, "tag", str, "")
    check_ref_name(tag)
    target = repo.resolve(revision)
    with repo.lock:  # a racing create_tag of the same name: the loser gets this 409
        if tag in repo.refs()["tags"]:
            raise HubError(409, f"Tag {tag!r} already exists")
        repo.set_ref(f"refs/tags/{tag}", target)
    h.send(200, {})


def delete_tag(h, repo, tag: str) -> None:
    _writable(h, repo)
    current = repo.refs()["tags"].get(tag)
    if current is None:
        raise HubError(404, f"Tag {tag!r} not found", "RevisionNotFound")
    repo.set_ref(f"refs/tags/{tag}", None, repo.git.refs[f"refs/tags/{tag}".encode()].decode())
    h.send(200, {})


def update_settings(h, repo) -> None:
    body = h.json_body()
    _writable(h, repo)
    if "private" in body:
        repo.update_settings(private=field(body, "private", bool))
    h.send(200, {})


def xet_token(h, repo) -> None:
    raise HubError(501, "The local Hub does not speak xet: set HF_HUB_DISABLE_XET=1 (sppo_hub.hub.use_endpoint "
                        "does this) so large files use the LFS basic transfer.")


def resolve(h, repo_type: str, repo_id: str, revision: str, path: str) -> None:
    """Serve a file with the headers hf_hub_download checks (X-Repo-Commit, ETag, sizes, Range)."""
    h.body()
    repo = _open(h, repo_type, repo_id)
    sha = repo.resolve(revision)
    entry = repo.entry(sha, path)
    if entry is None or entry.type != "file":
        raise HubError(404, f"Entry {path!r} not found in {repo_id}@{revision}", "EntryNotFound")
    headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
    if entry.lfs:
        oid = entry.lfs["oid"]
        headers.update({"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": entry.size})
        data_path = h.server.storage.lfs_path(oid)
        size = entry.size
        reader = lambda start, n: _iter_range(data_path, start, n)  # noqa: E731  (streamed: LFS files are big)
    else:
        headers["ETag"] = f'"{entry.oid}"'
        data = repo.read_blob(entry.oid)
        size = len(data)
        reader = lambda start, n: [data[start:start + n]]  # noqa: E731
    start, end, status = 0, size - 1, 200
    rng = byte_range(h.headers.get("Range"), size)
    if rng is not None:
        (start, end), status = rng, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = max(end - start + 1, 0)
    headers["Content-Length"] = length
    h.send(status, raw=b"", headers=headers)
    if h.command != "HEAD":
        for chunk in reader(start, length):
            h.wfile.write(chunk)


def _iter_range(path, start: int, n: int, chunk: int = 1 << 20):
    with open(path, "rb") as f:
        f.seek(start)
        while n > 0:
            data = f.read(min(chunk, n))
            if not data:
                return
            n -= len(data)
            yield data
