"""HTTP layer of the local Hub: limits, request parsing, auth, routing, JSON/error responses.

Built on the standard library's HTTPServer (no extra dependency, starts in milliseconds) with a
bounded pool of worker threads instead of one thread per connection. HTTP/1.1 keep-alive is on
(the huggingface_hub client reuses connections), so a request's body is either read whole or the
connection is closed after the answer. Hostile or broken clients are bounded (`ServerLimits`):
the caller is authenticated before any body is read, Content-Length is checked and capped before
reading, every socket read has an idle timeout and every request a deadline, and connections
beyond the pool and its queue get 503 at once.
"""

from __future__ import annotations

import errno
import hmac
import io
import json
import queue
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .router import route
from .storage import Storage
from .validation import HubError, content_length, json_object

_DRAIN_LIMIT = 64 * 1024  # an unread body this small is read off after an error, keeping the connection
_ANONYMOUS_BODY_LIMIT = 1024 * 1024  # read-only POSTs (paths-info, LFS batch) carry small JSON


@dataclass
class ServerLimits:
    """Resource limits of the local Hub (all configurable from `make_server` / `hub serve`)."""

    max_body_bytes: int = 512 * 1024 * 1024  # JSON / ndjson commit bodies (inline files are < 10 MB each)
    max_upload_bytes: int = 50 * 1024**3  # one LFS object, the Hub's per-file limit
    idle_timeout: float = 60.0  # longest wait for the next bytes from a client
    request_timeout: float = 60.0  # a request's head (and a body, plus size / min_body_rate) must arrive in this
    min_body_rate: float = 256 * 1024  # bytes/s a body upload may not go below on average
    max_workers: int = 32
    max_pending: int = 128  # accepted connections waiting for a worker; beyond, 503


class HubServer(HTTPServer):
    """Holds the storage, the accepted token, the identity it maps to, and the worker pool."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, storage: Storage, token: str | None, user: str, orgs: list[str],
                 limits: ServerLimits | None = None):
        self.limits = limits or ServerLimits()
        super().__init__(address, HubHandler)
        self.storage, self.token, self.user, self.orgs = storage, token, user, list(orgs)
        self.upload_secret = secrets.token_bytes(32)  # signs LFS upload URLs; never the user token
        from . import collections as _collections
        self.collections = _collections.CollectionStore(storage.root)
        self._pending: queue.Queue = queue.Queue(maxsize=self.limits.max_pending)
        self._active: set = set()  # connections being served, cut when the server closes
        self._workers = [threading.Thread(target=self._work, name=f"local-hub-worker-{n}", daemon=True)
                         for n in range(self.limits.max_workers)]
        for worker in self._workers:
            worker.start()

    def sign(self, text: str) -> str:
        return hmac.new(self.upload_secret, text.encode(), "sha256").hexdigest()

    # -- bounded worker pool ------------------------------------------------------------------
    def process_request(self, request, client_address) -> None:
        try:
            self._pending.put_nowait((request, client_address))
        except queue.Full:
            self._refuse(request)

    def _work(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            request, client_address = item
            self._active.add(request)
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one broken connection must not kill a worker
                self.handle_error(request, client_address)
            finally:
                self._active.discard(request)
                self.shutdown_request(request)

    def _refuse(self, request) -> None:
        body = b'{"error": "The local Hub is busy (all workers and its queue are in use): retry shortly."}'
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        pass  # quiet: a client that went away is not the server's problem; handlers answer their own errors

    def server_close(self) -> None:
        super().server_close()
        for request in list(self._active):  # kept-alive clients must not outlive the server
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _ in self._workers:
            try:
                self._pending.put_nowait(None)
            except queue.Full:
                break  # daemon workers end with the process
        self.storage.close()


class _DeadlineReader(io.RawIOBase):
    """Socket reads bounded by the idle timeout and by the current request's deadline."""

    def __init__(self, sock: socket.socket, handler: HubHandler):
        self.sock, self.handler = sock, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        h, limits = self.handler, self.handler.server.limits
        if h.deadline is not None:
            timeout = min(limits.idle_timeout, h.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("the request took longer than the local Hub's request timeout")
            self.sock.settimeout(timeout)
            return self.sock.recv_into(buffer)
        # Between requests (an idle kept-alive connection): wait up to the idle timeout, but give the
        # worker up within half a second when other connections are queued for one.
        end = time.monotonic() + limits.idle_timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("idle connection closed by the local Hub")
            self.sock.settimeout(min(0.5, remaining))
            try:
                n = self.sock.recv_into(buffer)
                break
            except TimeoutError:
                if h.server._pending.qsize():
                    raise TimeoutError("idle connection closed: other clients wait for a worker") from None
        if n:  # the first bytes of a request start its clock
            h.deadline = time.monotonic() + limits.request_timeout
        return n


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer

    def log_message(self, format, *args):  # noqa: A002 - quiet: request lines may carry signed URLs
        pass

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by a reader that enforces the timeouts
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), 64 * 1024)
        self.deadline = None
        self._linger = False

    def handle_one_request(self) -> None:
        self.deadline = None  # waiting for the next request: only the idle timeout applies
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: invite the body only from a caller that may send it; others get
        their 401/404 answer without a body ever being asked for."""
        try:
            handler, _args = route(self.command, [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")])
            if handler is None or (self.identity() is None and not getattr(handler, "anonymous", False)):
                return True
        except HubError:
            return True
        return super().handle_expect_100()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._linger:
                self._lingering_close()

    def _lingering_close(self) -> None:
        """After answering without reading a body: stop sending, then discard what the client still
        sends for a moment, so closing does not reset the connection before it reads the answer."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            end, seen = time.monotonic() + 1.0, 0
            while time.monotonic() < end and seen < 8 * 1024 * 1024:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                seen += len(chunk)
        except OSError:
            pass

    # -- request helpers ----------------------------------------------------------------------
    def body(self) -> bytes:
        """The whole request body (read once; its size was checked against the limits)."""
        if self._body is None:
            self._body = b"".join(self.body_chunks())
        return self._body

    def body_chunks(self, size: int = 1024 * 1024):
        """The body in chunks, within the request's deadline (streamed uploads use this)."""
        if self._body_state != "unread":
            raise RuntimeError("request body already consumed")
        self._body_state = "partial"
        limits = self.server.limits
        self.deadline = time.monotonic() + limits.request_timeout + self._length / limits.min_body_rate
        remaining = self._length
        while remaining > 0:
            chunk = self.rfile.read(min(size, remaining))
            if not chunk:
                self.close_connection = True
                raise HubError(400, f"Request body ended after {self._length - remaining} of {self._length} bytes.")
            remaining -= len(chunk)
            yield chunk
        self._body_state = "read"

    def json_body(self) -> dict:
        return json_object(self.body())

    def form_or_json(self) -> dict:
        if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            return {k: v for k, v in parse_qs(self.body().decode(errors="replace")).items()}
        return self.json_body()

    @property
    def base_url(self) -> str:
        host = self.headers.get("Host") or ""
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]{1,255}", host):  # a Host header ends up in links
            host = "%s:%d" % self.server.server_address[:2]
        return f"http://{host}"

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

    def _hidden(self, repo_type: str, repo_id: str) -> HubError:
        # The same answer for a private repo and a missing one: an anonymous caller learns nothing.
        return HubError(401, f"Repository Not Found for {repo_type}s/{repo_id}: it does not exist, or it is "
                             "private and needs the local Hub's token (token=... or HF_TOKEN).", "RepoNotFound")

    def readable_repo(self, repo_type: str, repo_id: str):
        """The repo if the caller may read it; missing and private-without-token answer alike."""
        try:
            repo = self.server.storage.get(repo_type, repo_id)
        except HubError as err:
            if err.status == 404 and self.identity() is None:
                raise self._hidden(repo_type, repo_id) from None
            raise
        self.can_read(repo)
        return repo

    def can_read(self, repo) -> None:
        if repo.settings.get("private") and self.identity() is None:
            raise self._hidden(repo.repo_type, repo.repo_id)

    # -- responses ----------------------------------------------------------------------------
    def send(self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        headers = dict(headers or {})
        self.connection.settimeout(self.server.limits.idle_timeout)  # a slow reader gets the idle timeout per write
        self.send_response(status)
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/json" if raw is None else "application/octet-stream"
        if self.close_connection:
            headers["Connection"] = "close"
        for key, value in headers.items():
            self.send_header(key, str(value))
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_json(self, err: HubError) -> None:
        if self._body_state == "unread" and self._length:
            if err.status not in (400, 401, 403, 411, 413) and self._length <= _DRAIN_LIMIT:
                try:
                    self.body()  # small: read it off and keep the connection
                except (HubError, OSError):
                    self.close_connection = True
            else:
                self.close_connection, self._linger = True, True  # never read an unauthorised/oversized body
        elif self._body_state == "partial":
            self.close_connection = True
        one_line = " ".join(err.message.split())[:300]  # header values must not contain line breaks
        headers = {"X-Error-Message": one_line.encode("ascii", "replace").decode()}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.status == 503:
            headers["Retry-After"] = "1"
        payload = {"error": err.message, **getattr(err, "extra", {})}
        self.send(err.status, payload, headers)

    def _scrub(self, text: str) -> str:
        """Error text without the server's own paths."""
        root = self.server.storage.root
        for path in {str(root.resolve()), str(root)}:
            text = text.replace(path, "<data-dir>")
        return text

    # -- dispatch -----------------------------------------------------------------------------
    def _check_request(self, handler) -> None:
        """Before any body is read: a valid length, the caller authenticated, the size within limits."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._length = 0
            self.close_connection = True
            raise HubError(411, "Chunked request bodies are not supported: send a Content-Length.")
        limits = self.server.limits
        upload = getattr(handler, "signed_upload", False)
        self._length = content_length(self.headers.get("Content-Length"),
                                      limits.max_upload_bytes if upload else 1 << 62)
        if handler is None:
            raise HubError(404, f"The local Hub does not serve {self.command} {urlsplit(self.path).path}")
        if self._length or self.command not in ("GET", "HEAD"):
            user = self.identity()  # a wrong token: 401 now
            if user is None and not getattr(handler, "anonymous", False):
                raise HubError(401, "Authorization required: pass the local Hub's token (token=... or HF_TOKEN).")
            if not upload:
                cap = limits.max_body_bytes if user is not None else min(limits.max_body_bytes, _ANONYMOUS_BODY_LIMIT)
                content_length(str(self._length), cap)

    def _dispatch(self) -> None:
        self._body, self._body_state, self._length = None, "unread", 0
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.parts = [unquote(p) for p in split.path.strip("/").split("/")]
        try:
            try:
                self._length = content_length(self.headers.get("Content-Length"), 1 << 62)
            except HubError:
                self._length = 0  # unknown: never read, close after answering
                self.close_connection, self._linger = True, True
                raise
            handler, args = route(self.command, self.parts)
            self._check_request(handler)
            handler(self, *args)
        except HubError as err:
            self.send_error_json(err)
        except TimeoutError:
            self.close_connection = True
            self._safe_send(HubError(408, "The request was not received in time (local Hub request timeout)."))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except OSError as err:
            status = 507 if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else 500
            self._safe_send(HubError(status, f"The local Hub could not write to its data dir ({err.strerror}); "
                                             "nothing was committed. Free disk space and retry."))
        except Exception as err:  # noqa: BLE001 - answer 500 instead of dropping the connection
            self._safe_send(HubError(500, self._scrub(f"Local Hub internal error: {type(err).__name__}: {err}")))

    def _safe_send(self, err: HubError) -> None:
        try:
            self.send_error_json(err)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch
