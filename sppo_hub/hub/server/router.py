"""URL routing of the local Hub: the Hub's API paths, LFS transfer URLs, file downloads, pages."""

from __future__ import annotations

_TYPE_PREFIX = {"models": "model", "datasets": "dataset", "spaces": "space"}


def route(method: str, parts: list[str]):
    """(handler, args) for a request path split on '/', or (None, ()) if nothing serves it."""
    from . import collections as col
    from . import lfs, pages, routes

    if parts[:1] == ["api"]:
        rest = parts[1:]
        if rest == ["whoami-v2"] and method == "GET":
            return routes.whoami, ()
        if rest[:1] == ["repos"] and len(rest) == 2:
            return {("POST", "create"): routes.create_repo, ("DELETE", "delete"): routes.delete_repo,
                    ("POST", "move"): routes.move_repo}.get((method, rest[1])), ()
        if rest == ["validate-yaml"] and method == "POST":
            return routes.validate_yaml, ()
        if rest[:1] == ["collections"]:
            return col.route(method, rest[1:])
        if rest[:1] and rest[0] in _TYPE_PREFIX:
            repo_type = _TYPE_PREFIX[rest[0]]
            if len(rest) == 1 and method == "GET":
                return routes.list_repos, (repo_type,)
            if len(rest) < 3:
                return None, ()
            repo_id, action, tail = f"{rest[1]}/{rest[2]}", rest[3] if len(rest) > 3 else "", rest[4:]
            if repo_type == "space" and action in ("variables", "secrets", "runtime"):
                return col.route_space(method, repo_id, action)
            return routes.repo_route(method, repo_type, repo_id, action, tail)
        return None, ()
    if parts[:1] == ["lfs-upload"] and len(parts) == 2 and method == "PUT":
        return lfs.upload, (parts[1],)
    if parts[:1] == ["lfs-verify"] and len(parts) == 2 and method == "POST":
        return lfs.verify, (parts[1],)
    repo_type, rest = "model", parts
    if parts[:1] and parts[0] in _TYPE_PREFIX and parts[0] != "models":
        repo_type, rest = _TYPE_PREFIX[parts[0]], parts[1:]
    if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
        return lfs.batch, (repo_type, f"{rest[0]}/{rest[1][:-4]}")
    if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
        return routes.resolve, (repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
    return pages.route(method, parts)
