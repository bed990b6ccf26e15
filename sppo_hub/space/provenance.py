"""What the Space learns from the model it serves: the judge of the SPPO run that trained it.

A checkpoint published by `sppo-hub run` carries the run manifest (`sppo/manifest.json` in its repo; `manifest.json`
beside a run's local checkpoint, or at the root of repos published by sppo-hub <= 0.1), whose `config.judge` is
the recipe's judge section. Serving the model with that judge by default means a Space reranks answers the way
training did, and works offline whenever the run did (a rule-based or callable judge, a judge already cached).
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

from ..judges import JudgeConfig

logger = logging.getLogger(__name__)

MANIFEST_PATHS = ("sppo/manifest.json", "manifest.json")


def _read_manifest(model: str, revision: str | None = None) -> dict | None:
    folder = Path(model)
    if folder.is_dir():
        for rel in MANIFEST_PATHS:
            if (folder / rel).is_file():
                return json.loads((folder / rel).read_text())
        return None
    from huggingface_hub import hf_hub_download

    for rel in MANIFEST_PATHS:
        try:
            return json.loads(Path(hf_hub_download(model, rel, revision=revision)).read_text())
        except Exception:  # noqa: BLE001 - not a run's model, no network, no such file: no run judge
            continue
    return None


def run_judge(model: str, revision: str | None = None) -> dict | None:
    """The JudgeConfig fields of the judge `model`'s run used, or None when the model carries no run manifest."""
    try:
        manifest = _read_manifest(model, revision)
    except (OSError, ValueError) as err:
        logger.info("no run manifest readable for %s: %s", model, err)
        return None
    judge = (manifest or {}).get("config", {}).get("judge")
    if not isinstance(judge, dict) or not judge.get("type"):
        return None
    known = {f.name for f in fields(JudgeConfig)}
    return {k: v for k, v in judge.items() if k in known}


def describe(judge: dict) -> str:
    """A short label: type plus model or callable."""
    what = judge.get("model") or judge.get("callable")
    return f"{judge['type']}:{what}" if what else str(judge["type"])
