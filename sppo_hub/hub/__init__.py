"""Hub publishing (`publish`), cards (`cards`), endpoint switching (`endpoint`) and the local Hub (`server`).

Imports are lazy so `import sppo_hub.hub` stays cheap.
"""

from __future__ import annotations

__all__ = ["HubPublisher", "RepoRef", "use_endpoint", "start_local_hub", "LocalHub"]


def __getattr__(name: str):
    if name in ("HubPublisher", "RepoRef"):
        from . import publish

        return getattr(publish, name)
    if name == "use_endpoint":
        from .endpoint import use_endpoint

        return use_endpoint
    if name in ("start_local_hub", "LocalHub"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
