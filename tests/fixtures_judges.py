"""Judge fixtures: a tiny PairRM-architecture ranker in PairRM's published layout."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_pairrm_dir(tmp_path_factory) -> Path:
    """A tiny random PairRM ranker (DeBERTa-v2, 2 layers, hidden 32) saved like llm-blender/PairRM."""
    from sppo_hub.testing.tiny_ranker import build_tiny_pairrm

    return build_tiny_pairrm(tmp_path_factory.mktemp("judges") / "tiny-pairrm", seed=0)
