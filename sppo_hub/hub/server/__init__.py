"""A local, Hub-compatible HTTP server for offline development, demos and tests.

It is a development tool, not the Hugging Face Hub: the unmodified `huggingface_hub`, `datasets`
and `transformers` clients can create repos, commit (inline and LFS basic transfer), branch, tag,
list, download and manage collections against it. It does not speak xet, pull requests, gated
repos, token scopes or the Hub's full YAML schema. Storage is git on disk (dulwich).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .app import HubServer, ServerLimits
from .validation import HubError
from .storage import Storage

__all__ = ["HubError", "LocalHub", "ServerLimits", "serve", "start_local_hub", "make_server"]

DEFAULT_USER = "sppo-user"


def make_server(data_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                token: str | None = None, user: str = DEFAULT_USER, orgs: list[str] | tuple = (),
                limits: ServerLimits | None = None) -> HubServer:
    """Build (but do not start) the server; `port=0` picks a free port.

    Raises ValueError, naming the setting, for a bad host, port or data dir (a file, unwritable, or
    served by another process) and a port already in use.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"host={host!r}: the local Hub only binds to loopback (127.0.0.1); it is a development tool.")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port={port!r}: use a TCP port between 1 and 65535 (0 picks a free one).")
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data dir {root} is a file, not a folder: pass a folder (it is created if missing).")
    try:
        root.mkdir(parents=True, exist_ok=True)
        storage = Storage(root)
    except (NotADirectoryError, FileExistsError) as err:
        raise ValueError(f"data dir {root}: a part of the path is a file ({err.strerror}); pass a folder.") from None
    except PermissionError as err:
        raise ValueError(f"data dir {root}: not writable ({err.strerror}); pass a folder you can write to.") from None
    try:
        return HubServer((host, port), storage, token, user, list(orgs), limits)
    except OSError as err:
        storage.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is already in use: pick another --port (0 picks a free "
                             "one), or stop what serves it.") from None
        if err.errno == errno.EACCES:
            raise ValueError(f"port {port}: binding needs privileges; use a port above 1023.") from None
        raise


def serve(data_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          user: str = DEFAULT_USER, orgs: list[str] | tuple = (), limits: ServerLimits | None = None) -> None:
    """Serve until interrupted (blocking)."""
    server = make_server(data_dir, host, port, token, user, orgs, limits)
    try:
        server.serve_forever()
    finally:
        server.server_close()


@dataclass
class LocalHub:
    """A local Hub running in a background thread; `.url`, `.token`, `.api`, `.stop()`."""

    server: HubServer
    token: str | None
    user: str
    data_dir: Path
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.token)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:  # never show the token
        return f"LocalHub(url={self.url!r}, user={self.user!r}, data_dir={str(self.data_dir)!r})"


def start_local_hub(data_dir: str | os.PathLike, port: int = 0, token: str | None = None,
                    user: str = DEFAULT_USER, orgs: list[str] | tuple = (), host: str = "127.0.0.1",
                    limits: ServerLimits | None = None) -> LocalHub:
    """Start the local Hub in a daemon thread and return once it accepts connections."""
    server = make_server(data_dir, host, port, token, user, orgs, limits)
    thread = threading.Thread(target=server.serve_forever, name="sppo-local-hub", daemon=True)
    thread.start()
    with socket.create_connection(server.server_address[:2], timeout=5):
        pass
    return LocalHub(server, token, user, Path(data_dir), thread)
