"""Collections and Space variables/secrets of the local Hub.

Collections live in one JSON file (`collections.json`, replaced atomically under a lock). Space
variables are stored in the Space's settings; secret *values* are kept in memory only (the Hub
never returns them, and the local Hub does not run Spaces), so no secret is ever written to disk.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
import uuid
from pathlib import Path

from .validation import HubError, field, validate_repo_id

_ITEM_TYPES = {"model", "dataset", "space", "paper", "collection"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class CollectionStore:
    def __init__(self, root: Path):
        self.path = Path(root) / "collections.json"
        self.lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self, data: dict[str, dict]) -> None:
        tmp = self.path.with_name(f".collections.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def route(method: str, rest: list[str]):
    if not rest:
        return {"GET": list_collections, "POST": create_collection}.get(method), ()
    if len(rest) >= 2:
        slug = f"{rest[0]}/{rest[1]}"
        if len(rest) == 2:
            return {"GET": get_collection, "DELETE": delete_collection}.get(method), (slug,)
        if rest[2] == "items" and len(rest) == 3 and method == "POST":
            return add_item, (slug,)
        if rest[2] == "items" and len(rest) == 4 and method == "DELETE":
            return delete_item, (slug, rest[3])
    return None, ()


def _public(c: dict, with_position: bool = True) -> dict:
    """Collection JSON; list_collections numbers positions itself, so the list omits them."""
    items = sorted(c["items"], key=lambda i: i["position"])
    return {**c, "items": items, **({"position": 0} if with_position else {})}


def _visible(h, c: dict) -> bool:
    return not c["private"] or h.identity() is not None


def list_collections(h) -> None:
    owner, item = h.query.get("owner"), h.query.get("item")
    out = []
    for c in h.server.collections.load().values():
        if owner and c["owner"] != owner or not _visible(h, c):
            continue
        if item and not any(f"{i['type']}s/{i['id']}" == item for i in c["items"]):
            continue
        out.append(_public(c, with_position=False))
    h.send(200, out)


def create_collection(h) -> None:
    body = h.json_body()
    title, namespace = field(body, "title", str, "").strip(), field(body, "namespace", str) or h.require_user()
    if not title or len(title) > 256 or any(c in title for c in "\r\n\x00"):
        raise HubError(400, "Collection 'title' is required: one line of at most 256 characters.")
    h.require_write(namespace)
    store = h.server.collections
    with store.lock:
        data = store.load()
        for c in data.values():
            if c["owner"] == namespace and c["title"] == title:
                err = HubError(409, f"Collection {title!r} already exists in {namespace}")
                err.extra = {"slug": c["slug"]}
                raise err
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "collection"
        slug = f"{namespace}/{base}-{secrets.token_hex(12)}"
        c = {"slug": slug, "title": title, "owner": namespace, "items": [], "lastUpdated": _now(),
             "private": bool(body.get("private")), "theme": "default", "upvotes": 0,
             "description": body.get("description")}
        data[slug] = c
        store.save(data)
    h.send(200, _public(c))


def _get(h, slug: str) -> dict:
    c = h.server.collections.load().get(slug)
    if c is None or not _visible(h, c):
        raise HubError(404, f"Collection {slug!r} not found")
    return c


def _writable(h, data: dict, slug: str) -> dict:
    """The collection `slug` from loaded `data`, after checking the caller may write to its owner's namespace."""
    c = data.get(slug)
    if c is None:
        raise HubError(404, f"Collection {slug!r} not found")
    h.require_write(c["owner"])
    return c


def get_collection(h, slug: str) -> None:
    h.send(200, _public(_get(h, slug)))


def delete_collection(h, slug: str) -> None:
    store = h.server.collections
    with store.lock:
        data = store.load()
        _writable(h, data, slug)
        del data[slug]
        store.save(data)
    h.send(200, {})


def add_item(h, slug: str) -> None:
    body = h.json_body()
    item = field(body, "item", dict, {})
    item_id, item_type = field(item, "id", str, ""), field(item, "type", str, "")
    if item_type not in _ITEM_TYPES:
        raise HubError(400, f"Invalid item type {item_type!r}: use one of {sorted(_ITEM_TYPES)}.")
    if item_type in ("model", "dataset", "space"):
        h.server.storage.get(item_type, item_id)  # 404 if the repo does not exist
    store = h.server.collections
    with store.lock:
        data = store.load()
        c = _writable(h, data, slug)
        if any(i["id"] == item_id and i["type"] == item_type for i in c["items"]):
            raise HubError(409, f"{item_type} {item_id} is already in the collection")
        entry = {"_id": secrets.token_hex(12), "id": item_id, "type": item_type, "position": len(c["items"])}
        if body.get("note"):
            entry["note"] = {"text": body["note"], "html": body["note"]}
        c["items"].append(entry)
        c["lastUpdated"] = _now()
        store.save(data)
    h.send(200, _public(c))


def delete_item(h, slug: str, item_object_id: str) -> None:
    store = h.server.collections
    with store.lock:
        data = store.load()
        c = _writable(h, data, slug)
        c["items"] = [i for i in c["items"] if i["_id"] != item_object_id]
        for pos, i in enumerate(c["items"]):
            i["position"] = pos
        store.save(data)
    h.send(200, {})


# -- Space variables, secrets, runtime ----------------------------------------------------------
_SECRETS: dict[tuple[str, str], dict[str, str]] = {}  # (data dir, space id) -> {key: value}, memory only


def route_space(method: str, repo_id: str, action: str):
    handlers = {
        ("GET", "variables"): space_variables, ("POST", "variables"): space_variables,
        ("DELETE", "variables"): space_variables, ("GET", "secrets"): space_secrets,
        ("POST", "secrets"): space_secrets, ("DELETE", "secrets"): space_secrets,
        ("GET", "runtime"): space_runtime,
    }
    handler = handlers.get((method, action))
    return (handler, (repo_id,)) if handler else (None, ())


def _space(h, repo_id: str, write: bool):
    validate_repo_id(repo_id)
    if write or h.command != "GET":
        h.require_write(repo_id.split("/")[0])
        return h.server.storage.get("space", repo_id)
    return h.readable_repo("space", repo_id)


def space_variables(h, repo_id: str) -> None:
    body = h.json_body()
    repo = _space(h, repo_id, write=h.command != "GET")
    variables = dict(repo.settings.get("variables") or {})
    if h.command == "POST":
        key = field(body, "key", str, "")
        if not key:
            raise HubError(400, "Variable 'key' is required.")
        variables[key] = {"value": str(body.get("value", "")), "description": body.get("description"),
                          "updatedAt": _now()}
        repo.update_settings(variables=variables)
    elif h.command == "DELETE":
        variables.pop(field(body, "key", str, ""), None)
        repo.update_settings(variables=variables)
    h.send(200, variables)


def space_secrets(h, repo_id: str) -> None:
    body = h.json_body()
    repo = _space(h, repo_id, write=h.command != "GET")
    described = dict(repo.settings.get("secrets") or {})
    values = _SECRETS.setdefault((str(h.server.storage.root), repo_id), {})
    if h.command == "POST":
        key = field(body, "key", str, "")
        if not key:
            raise HubError(400, "Secret 'key' is required.")
        values[key] = str(body.get("value", ""))
        described[key] = {"description": body.get("description"), "updatedAt": _now()}
        repo.update_settings(secrets=described)  # names and descriptions only, never values
    elif h.command == "DELETE":
        values.pop(field(body, "key", str, ""), None)
        described.pop(field(body, "key", str, ""), None)
        repo.update_settings(secrets=described)
    h.send(200, described if h.command == "GET" else {})


def space_runtime(h, repo_id: str) -> None:
    h.body()
    repo = _space(h, repo_id, write=False)
    # The local Hub stores Spaces but does not build or run them (`sppo-hub space` runs the app).
    h.send(200, {"stage": "STOPPED", "hardware": {"current": None, "requested": None},
                 "sdk": repo.settings.get("sdk")})
