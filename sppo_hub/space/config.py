"""`SpaceConfig`: what the Space serves and its limits (env vars SPPO_<FIELD>, or sppo_space.json).

Read by the app (`space.app`) and written into a deployed Space by `space.deploy`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..judges import JudgeConfig

SPACE_DIR = Path(__file__).resolve().parents[2] / "spaces"
CONFIG_FILE = "sppo_space.json"  # written into the Space by `deploy_space`, read by `SpaceConfig.from_env`
ENV_PREFIX = "SPPO_"


@dataclass
class SpaceConfig:
    """What the Space serves and its limits. Every field can be set by env var SPPO_<FIELD> (upper case)."""

    model: str = field(default="", metadata={"help": "Chat model: Hub repo id or local path."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of `model`."})
    compare_models: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra models (e.g. earlier iterations) offered in the 'compare iterations' tab."},
    )
    judge_type: str | None = field(
        default=None,
        metadata={"help": "Judge type (see sppo_hub.judges.JUDGE_TYPES). None: the judge of the run that trained "
                          "`model` (from its run manifest), else pairrm."},
    )
    judge: str | None = field(
        default=None,
        metadata={"help": "Judge model id/path, or 'module:function' for judge_type=callable. None: judge default."},
    )
    device: str | None = field(default=None, metadata={"help": "torch device; None: cuda if available, else cpu."})
    max_n: int = field(default=8, metadata={"help": "Cap on candidates per turn."})
    default_n: int = field(default=4, metadata={"help": "Candidates per turn shown by default."})
    max_new_tokens: int = field(default=512, metadata={"help": "Cap on new tokens per candidate."})
    default_max_new_tokens: int = field(default=128, metadata={"help": "Default new tokens per candidate."})
    max_input_chars: int = field(default=2000, metadata={"help": "Longest user message accepted."})
    max_context_tokens: int = field(
        default=1024, metadata={"help": "Prompt token budget; the oldest turns are dropped beyond it."}
    )
    time_limit_s: float = field(
        default=60.0, metadata={"help": "Wall-clock limit of one answer's generation (n candidates), in seconds; "
                                         "an answer cut by it is flagged in the UI."})
    concurrency_limit: int = field(
        default=1, metadata={"help": "Requests served at once (the rest wait in the queue)."}
    )
    max_queue: int = field(default=32, metadata={"help": "Longest queue before new requests are refused."})
    title: str = field(default="SPPO chat: best-of-n reranked by a pairwise judge", metadata={"help": "Page title."})

    def __post_init__(self):
        if isinstance(self.compare_models, str):
            self.compare_models = [m.strip() for m in self.compare_models.split(",") if m.strip()]
        for name in ("max_n", "default_n", "max_new_tokens", "default_max_new_tokens", "max_input_chars",
                     "max_context_tokens", "concurrency_limit", "max_queue"):
            value = int(getattr(self, name))
            if value < 1:
                raise ValueError(f"space.{name}: must be >= 1, got {value}")
            setattr(self, name, value)
        self.compare_models = list(self.compare_models or [])
        self.time_limit_s = float(self.time_limit_s)
        if self.time_limit_s <= 0:
            raise ValueError(f"space.time_limit_s: must be > 0 seconds, got {self.time_limit_s}")
        self.default_n = min(self.default_n, self.max_n)
        self.default_max_new_tokens = min(self.default_max_new_tokens, self.max_new_tokens)
        self.judge_config()  # validate the judge fields now, not at the first message

    def judge_config(self) -> JudgeConfig:
        """The explicitly configured judge (pairrm when `judge_type` is None); see `resolve_judge`."""
        if self.judge_type == "callable":
            return JudgeConfig(type="callable", callable=self.judge, device=self.device)
        return JudgeConfig(type=self.judge_type or "pairrm", model=self.judge, device=self.device)

    def resolve_judge(self) -> tuple[JudgeConfig, str]:
        """(judge config, where it comes from): the configured judge, else the run's judge, else PairRM."""
        if self.judge_type is None:
            from .provenance import describe, run_judge

            found = run_judge(self.model, self.revision)
            if found is not None:
                return JudgeConfig(**{**found, "device": self.device}), f"the run's judge {describe(found)}"
            return self.judge_config(), "pairrm (the default: the model names no run judge)"
        return self.judge_config(), f"{self.judge_type}:{self.judge or 'default'}"

    @property
    def all_models(self) -> list[str]:
        return list(dict.fromkeys([self.model, *self.compare_models]))

    @classmethod
    def from_env(cls, env: dict | None = None, config_file: str | Path | None = None) -> "SpaceConfig":
        """Fields from `config_file` (default: sppo_space.json beside spaces/app.py, if any), then SPPO_* env vars."""
        env = os.environ if env is None else env
        values: dict = {}
        path = Path(config_file) if config_file else None
        if path is not None and path.is_file():
            values.update(json.loads(path.read_text()))
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; valid keys are {sorted(known)}")
        for name in known:
            if env.get(f"{ENV_PREFIX}{name.upper()}"):  # empty variables keep the file's value / the default
                values[name] = env[f"{ENV_PREFIX}{name.upper()}"]
        if not values.get("model"):
            raise ValueError("SPPO_MODEL: no model configured; set SPPO_MODEL to a Hub repo id or a local path")
        return cls(**values)
