"""Shared test fixtures. Every model and dataset is built offline; nothing is downloaded.

Feature-specific fixtures live in `tests/fixtures_<area>.py` and are loaded as plugins below.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Never reach for the network, never send telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"

# ci_skips: under CI=true a skipped test fails (its list of the only tests allowed to skip is there).
pytest_plugins = [p.stem for p in sorted(Path(__file__).parent.glob("fixtures_*.py"))] + ["ci_skips", "pytester"]

@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`../shared/data` beside the repo (benchmark files); skip with a reason where it is absent."""
    data = SHARED_DIR / "data"
    if not data.is_dir():
        pytest.skip(f"benchmark data not found at {data} (the ../shared folder beside the repo)")
    return data


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama chat model (ChatML, byte-level BPE) saved with save_pretrained."""
    from sppo_hub.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)
