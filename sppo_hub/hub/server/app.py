"""HTTP layer of the local Hub: request parsing, auth, routing, JSON/error responses.

Built on the standard library's ThreadingHTTPServer: it needs no extra dependency, starts in
milliseconds, and one thread per connection is plenty for a development Hub. HTTP/1.1 keep-alive
is on (the huggingface_hub client reuses connections), so every handler drains the request body.
"""

from __future__ import annotations

import errno
import hmac
import json
import re
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .storage import HubError, Storage

_TYPE_PREFIX = {"models": "model", "datasets": "dataset", "spaces": "space"}


class HubServer(ThreadingHTTPServer):
    """Holds the storage, the accepted token and the identity it maps to."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, storage: Storage, token: str | None, user: str, orgs: list[str]):
        super().__init__(address, HubHandler)
        self.storage, self.token, self.user, self.orgs = storage, token, user, list(orgs)
        self.upload_secret = secrets.token_bytes(32)  # signs LFS upload URLs; never the user token
        from . import collections as _collections
        self.collections = _collections.CollectionStore(storage.root)

    def sign(self, text: str) -> str:
        return hmac.new(self.upload_secret, text.encode(), "sha256").hexdigest()


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format, *args):  # noqa: A002 - quiet: request lines may carry signed URLs
        pass

    # -- request helpers ----------------------------------------------------------------------
    def body(self) -> bytes:
        if not hasattr(self, "_body"):
            length = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(length) if length else b""
        return self._body

    def json_body(self) -> dict:
        raw = self.body()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise HubError(400, f"Request body is not valid JSON: {err}") from err

    def form_or_json(self) -> dict:
        if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            return {k: v for k, v in parse_qs(self.body().decode()).items()}
        return self.json_body()

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host', '%s:%d' % self.server.server_address[:2])}"

    def identity(self) -> str | None:
        """The caller's user name, None when anonymous; 401 for a token the server does not know."""
        auth = self.headers.get("Authorization") or ""
        if self.server.token is None:
            return self.server.user
        if not auth:
            return None
        given = auth.removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            raise HubError(401, "Invalid credentials in Authorization header (the local Hub's token differs).")
        return self.server.user

    def require_user(self) -> str:
        user = self.identity()
        if user is None:
            raise HubError(401, "Authorization required: pass the local Hub's token (token=... or HF_TOKEN).")
        return user

    def require_write(self, namespace: str) -> str:
        user = self.require_user()
        if namespace not in (user, *self.server.orgs):
            raise HubError(403, f"You don't have the rights to write to the namespace {namespace!r} "
                                f"(user {user!r} can write to {[user, *self.server.orgs]}).")
        return user

    def can_read(self, repo) -> None:
        if repo.settings.get("private") and self.identity() is None:
            raise HubError(401, f"Repository Not Found for {repo.repo_id}: private repo, token required.",
                           "RepoNotFound")

    # -- responses ----------------------------------------------------------------------------
    def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_json(self, err: HubError) -> None:
        one_line = " ".join(err.message.split())[:300]  # header values must not contain line breaks
        headers = {"X-Error-Message": one_line.encode("ascii", "replace").decode()}
        if err.code:
            headers["X-Error-Code"] = err.code
        payload = {"error": err.message, **getattr(err, "extra", {})}
        self.send(err.status, payload, headers)

    # -- dispatch -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        self.__dict__.pop("_body", None)  # the handler object serves every request of a kept-alive connection
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.parts = [unquote(p) for p in split.path.strip("/").split("/")]
        try:
            handler, args = route(self.command, self.parts)
            if handler is None:
                self.body()
                raise HubError(404, f"The local Hub does not serve {self.command} {split.path}")
            handler(self, *args)
        except HubError as err:
            self.body()  # drain: a leftover body would corrupt the kept-alive connection
            self.send_error_json(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except OSError as err:
            self.body()
            status = 507 if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 500
            self.send_error_json(HubError(status, f"The local Hub could not write to its data dir ({err.strerror}); "
                                                  "nothing was committed. Free disk space and retry."))
        except Exception as err:  # noqa: BLE001 - answer 500 instead of dropping the connection
            self.body()
            self.send_error_json(HubError(500, f"Local Hub internal error: {type(err).__name__}: {err}"))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch


def route(method: str, parts: list[str]):
    """(handler, args) for a request path split on '/', or (None, ()) if nothing serves it."""
    from . import collections as col
    from . import lfs, routes

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
    repo_type = "model"
    if parts[:1] and parts[0] in _TYPE_PREFIX and parts[0] != "models":
        repo_type, parts = _TYPE_PREFIX[parts[0]], parts[1:]
    if len(parts) >= 2 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
        return lfs.batch, (repo_type, f"{parts[0]}/{parts[1][:-4]}")
    if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
        return routes.resolve, (repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
    return None, ()


REVISION_RE = re.compile(r"^[^\x00-\x1f~^:?*\[\\ ]+$")
