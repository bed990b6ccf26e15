"""Training pi_t on TRL: `SPPOConfig` (`config`), `SPPOTrainer` / `train_policy` (`trainer`), dtypes and
weight loading (`precision`). The losses themselves are in `sppo_hub.core.losses`.
"""

from __future__ import annotations

from ..io.lazy_api import lazy_api

# name -> the module that defines it
_API = {
    "SPPOConfig": ".config",
    "SPPOTrainer": ".trainer",
    "add_initial_logps": ".trainer",
    "save_policy": ".trainer",
    "train_policy": ".trainer",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_api(__name__, _API, globals())
