"""Hugging Face Space entry point: chat with best-of-n answers reranked by a pairwise judge.

Configuration comes from `sppo_space.json` (written by `sppo-hub space deploy`) and the Space's
variables (SPPO_MODEL, SPPO_JUDGE_TYPE, SPPO_JUDGE, SPPO_COMPARE_MODELS, SPPO_MAX_N, ...), which
take precedence. Locally: `SPPO_MODEL=path/or/repo python spaces/app.py` or `sppo-hub space run`.
The deployed Space carries a copy of the `sppo_hub` package beside this file.
"""

from pathlib import Path

from sppo_hub.space.config import CONFIG_FILE, SpaceConfig
from sppo_hub.space.app import build_demo

config = SpaceConfig.from_env(config_file=Path(__file__).with_name(CONFIG_FILE))
demo = build_demo(config)

if __name__ == "__main__":
    demo.launch(show_error=True)
