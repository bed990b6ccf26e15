"""The Gradio Space: chat with judge-reranked best-of-n answers, and its one-command deploy.

`config` (`SpaceConfig`), `app` (the Gradio app: `build_demo`, `launch`), `chat` (chat model, ranking),
`provenance` (the run's judge), `deploy` (`plan_deploy`, `deploy_space`).
"""

from __future__ import annotations

from ..io.lazy_api import lazy_api

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

__getattr__, __dir__ = lazy_api(__name__, _API, globals())
