"""A fault-injecting HTTP proxy for tests: huggingface_hub -> proxy -> a (local) Hub, with the Hub's bad days.

    with FaultyHubProxy(hub.url, [Fault("429", retry_after=1, every=7), Fault("drop_reply", "POST", "/commit/")]) as proxy:
        run(endpoint=proxy.url)
        print(proxy.summary())          # "429 x3, drop_reply x1 (41 requests)"

Faults (each on the requests whose method and path match; `skip` lets that many through first, then `times`
consecutive ones get the fault; or `every`-th one, at most `limit` times):
- "429": answered 429 with Retry-After (not forwarded); "500"/"502"/"503": that status (not forwarded);
- "reset_upload": half the request body is read, then the connection is reset (an LFS upload cut mid-way);
- "drop_reply": forwarded and applied by the Hub, then the connection is reset instead of answering;
- "down": the request is dropped and the proxy stops listening for `down_s` seconds (connections refused,
  kept-alive ones reset), then listens again on the same port.

Loopback only; the Host header is passed on, so the Hub's links (LFS upload URLs) point back at the proxy.
Every loop is bounded: the proxy stops itself after `max_lifetime_s`.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}
_STATUS = {"429", "500", "502", "503", "504"}
_KINDS = _STATUS | {"reset_upload", "drop_reply", "down"}


@dataclass
class Fault:
    kind: str
    method: str = ""  # "" = any
    path: str = ""  # a regex searched in the request path; "" = any
    skip: int = 0
    times: int = 1
    every: int = 0
    limit: int = 0  # with `every`: the most injections (0: no limit)
    retry_after: int = 1  # for "429"
    down_s: float = 30.0  # for "down"

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"kind={self.kind!r}: one of {sorted(_KINDS)}")
        self.seen = self.injected = 0

    def hit(self, method: str, path: str) -> bool:
        if (self.method and method != self.method) or (self.path and not re.search(self.path, path)):
            return False
        self.seen += 1
        if self.every:
            fire = self.seen % self.every == 0 and (not self.limit or self.injected < self.limit)
        else:
            fire = self.skip < self.seen <= self.skip + self.times
        self.injected += fire
        return fire


class FaultyHubProxy:
    def __init__(self, upstream: str, faults: list[Fault] = (), port: int = 0, max_lifetime_s: float = 1800.0):
        up = urlsplit(upstream)
        if up.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"upstream={upstream!r}: the fault proxy only forwards to a loopback Hub.")
        self.upstream = (up.hostname, up.port or 80)
        self.faults, self.counts, self.requests = list(faults), Counter(), 0
        self.events: list[str] = []  # "429 GET /api/models/..." per injected fault, in order
        self._lock, self._down_until, self._stopped = threading.Lock(), 0.0, False
        self._server = self._serve(port)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._watchdog = threading.Timer(max_lifetime_s, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()

    # -- lifecycle -----------------------------------------------------------------------------
    def _serve(self, port: int) -> ThreadingHTTPServer:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return server

    def _go_down(self, seconds: float) -> None:
        """Stop listening for `seconds`, then listen again on the same port (run in its own thread)."""
        server = self._server
        server.shutdown()
        server.server_close()
        time.sleep(seconds)
        with self._lock:
            if self._stopped:
                return
            for _ in range(50):  # the port was ours a moment ago: retry briefly if the OS still holds it
                try:
                    self._server = self._serve(self.port)
                    break
                except OSError:
                    time.sleep(0.1)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            server = self._server
        server.shutdown()
        server.server_close()
        self._watchdog.cancel()

    def __enter__(self) -> "FaultyHubProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        faults = ", ".join(f"{k} x{n}" for k, n in sorted(self.counts.items())) or "no faults"
        return f"{faults} ({self.requests} requests)"

    # -- decisions -----------------------------------------------------------------------------
    def decide(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests += 1
            if time.monotonic() < self._down_until:
                self.counts["dropped_while_down"] += 1
                return Fault("down", down_s=0.0)
            chosen = None
            for fault in self.faults:
                if fault.hit(method, path) and chosen is None:
                    chosen = fault
            if chosen is not None:
                self.counts[chosen.kind] += 1
                self.events.append(f"{chosen.kind} {method} {path.split('?')[0]}")
                if chosen.kind == "down":
                    self._down_until = time.monotonic() + chosen.down_s
                    threading.Thread(target=self._go_down, args=(chosen.down_s,), daemon=True).start()
            return chosen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle kept-alive connection's thread ends
    owner: FaultyHubProxy

    def log_message(self, *args) -> None:  # quiet
        pass

    def _any(self) -> None:
        fault = self.owner.decide(self.command, self.path)
        kind = fault.kind if fault else None
        if kind == "reset_upload":
            self._read_body(half=True)
            return self._reset()
        body = self._read_body()
        if kind == "down":
            return self._reset()
        if kind in _STATUS:
            payload = json.dumps({"error": f"injected {kind} (fault proxy)"}).encode()
            self.send_response(int(kind))
            if kind == "429":
                self.send_header("Retry-After", str(fault.retry_after))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if self.command != "HEAD" else b"")
            return
        status, reason, headers, data = self._forward(body)
        if kind == "drop_reply":  # the Hub applied it; the answer never arrives
            return self._reset()
        self.send_response(status, reason)
        for key, value in headers:
            if key.lower() not in _HOP:
                self.send_header(key, value)
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any

    def _read_body(self, half: bool = False) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            for _ in range(1_000_000):  # bounded: at most a million chunks
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0 or half and parts:
                    if size == 0:
                        self.rfile.readline(1024)
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length // 2 if half else length)

    def _forward(self, body: bytes):
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            if body or self.command in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees a reset connection, not a clean end."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_connection = True
        try:
            self.connection.close()
        except OSError:
            pass
