"""The Gradio Space: chat with judge-reranked best-of-n answers, and its one-command deploy.

`config` (`SpaceConfig`), `app` (the Gradio app: `build_demo`, `launch`), `chat` (chat model, ranking),
`provenance` (the run's judge), `deploy` (`plan_deploy`, `deploy_space`).
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_API = {
    "SpaceConfig": ".config",
    "build_demo": ".app",
    "launch": ".app",
    "DeployPlan": ".deploy",
    "deploy_space": ".deploy",
    "plan_deploy": ".deploy",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    """Import the module that defines `name` on first use, so importing this package stays cheap."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
