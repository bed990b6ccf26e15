"""Training pi_t on TRL: `SPPOConfig` (`config`), `SPPOTrainer` / `train_policy` (`trainer`), dtypes and
weight loading (`precision`). The losses themselves are in `sppo_hub.core.losses`.
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_API = {
    "SPPOConfig": ".config",
    "SPPOTrainer": ".trainer",
    "add_initial_logps": ".trainer",
    "save_policy": ".trainer",
    "train_policy": ".trainer",
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
