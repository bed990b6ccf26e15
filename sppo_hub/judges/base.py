"""The judge interface: anything that yields the raw K x K pairwise table of a prompt's responses.

A judge reads each presentation "response i first, response j second" and returns its raw verdict
that i beats j, either as a logit or as a probability (`output_kind`). Both orders are present, so
position bias can be cancelled later by `sppo_hub.core.preference.pairwise_probabilities`; the diagonal
is unused and filled with 0 (logits) or 0.5 (probs).
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np

JUDGE_TYPES = ("pairrm", "reward_model", "gpm", "llm", "callable", "correctness")

# type -> (module under sppo_hub.judges, class name); imported lazily by `load_judge`.
_JUDGE_CLASSES = {
    "pairrm": ("pairrm", "PairRMJudge"),
    "reward_model": ("reward_model", "RewardModelJudge"),
    "gpm": ("gpm", "GPMJudge"),
    "llm": ("llm_judge", "LLMJudge"),
    "callable": ("callable", "CallableJudge"),
    "correctness": ("rule_based", "CorrectnessJudge"),  # the rule-based correctness judge (no model)
}


class PairwiseJudge(ABC):
    """Base class of every judge.

    Subclasses set `output_kind` ("logits" or "probs") and `name` (shown in model cards), and
    implement `pairwise_tables`. `table[i, j]` is the raw verdict for "i first, j second", read as
    "i beats j"; the diagonal holds the neutral value (0 logit / 0.5 prob).
    """

    output_kind: Literal["logits", "probs"] = "probs"
    name: str = "judge"

    @abstractmethod
    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        """One float K_p x K_p table per prompt (K_p >= 2, may differ between prompts)."""

    @classmethod
    def from_config(cls, config: "JudgeConfig") -> "PairwiseJudge":
        """Build the judge from a `JudgeConfig`.

        Default: call the constructor with every non-None config field whose name is one of its
        parameters (model, batch_size, max_length, device, dtype, base_url, ...), plus
        `config.extra`. Subclasses whose constructor differs override this.
        """
        params = inspect.signature(cls.__init__).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {
            f.name: getattr(config, f.name)
            for f in fields(config)
            if f.name not in ("type", "extra")
            and (f.name in params or takes_all)
            and getattr(config, f.name) is not None
        }
        kwargs.update(config.extra)
        return cls(**kwargs)

    @property
    def diagonal_value(self) -> float:
        """The neutral value placed on a table's diagonal."""
        return 0.0 if self.output_kind == "logits" else 0.5


def validate_judge_inputs(prompts: list[str], responses: list[list[str]]) -> None:
    """Shared input checks: one response list per prompt, each with K >= 2 strings."""
    if len(prompts) != len(responses):
        raise ValueError(
            f"responses: got {len(responses)} response lists for {len(prompts)} prompts; "
            "pass exactly one list of responses per prompt"
        )
    for idx, (prompt, cands) in enumerate(zip(prompts, responses)):
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{idx}]: expected a string, got {type(prompt).__name__}")
        if isinstance(cands, str) or len(cands) < 2:
            n = 1 if isinstance(cands, str) else len(cands)
            raise ValueError(
                f"responses[{idx}]: a prompt needs at least 2 responses to compare, got {n}; "
                "generate K >= 2 samples per prompt"
            )
        for k, cand in enumerate(cands):
            if not isinstance(cand, str):
                raise ValueError(
                    f"responses[{idx}][{k}]: expected a string, got {type(cand).__name__}"
                )


@dataclass
class JudgeConfig:
    """Which judge to build and how to run it (the `judge:` section of a recipe).

    `JudgeConfig(type="callable", callable=my_fn)` makes any Python function a judge, as does
    `CallableJudge(my_fn)`; recipes name it as "module:function" instead.
    """

    type: str = field(
        default="pairrm",
        metadata={"help": f"Judge type, one of {', '.join(JUDGE_TYPES)}."},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "Model path or Hub repo id (pairrm, reward_model, gpm, llm). "
            "Defaults: llm-blender/PairRM for pairrm; required for the others."
        },
    )
    revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit) of `model`."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Pairs (or responses) scored per forward pass."}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Max tokens per judge input; longer inputs are truncated. None: judge default."},
    )
    device: str | None = field(
        default=None, metadata={"help": "torch device (cpu, cuda, cuda:1, ...). None: cuda if available."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: auto, float32, bfloat16, float16. auto: fp32 for PairRM on every device "
                          "(exact, equal to llm-blender); for the other model judges bf16 on GPU, fp32 on CPU."},
    )
    base_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible endpoint for LLM judges (e.g. http://localhost:8000/v1)."},
    )
    api_key_env: str | None = field(
        default=None,
        metadata={"help": "Name of the environment variable holding the endpoint's API key (never the key)."},
    )
    # A recipe or the CLI gives a string; from Python the function object itself works too (the annotation stays
    # `str` so that argument parsers built from this dataclass keep working).
    callable: str | None = field(
        default=None,
        metadata={"help": "type=callable: 'module:function' or 'file.py:function' (recipes, CLI), or, from Python, "
                          "the function object itself; fn(prompt, a, b) -> P(a beats b)."},
    )
    batched: bool = field(
        default=False,
        metadata={"help": "type=callable: fn takes lists (prompts, as, bs) and returns a list of P."},
    )
    output_kind: str | None = field(
        default=None,
        metadata={"help": "type=callable: 'probs' (default) or 'logits', what fn returns."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modeling code from the model repo."}
    )
    judge_template: str | None = field(
        default=None, metadata={"help": "LLM judges: prompt template file or name (None: built-in)."}
    )
    extra: dict = field(
        default_factory=dict, metadata={"help": "Judge-specific keyword arguments, passed through."}
    )

    def __post_init__(self):
        if self.type not in JUDGE_TYPES:
            raise ValueError(
                f"judge.type: unknown judge type {self.type!r}; choose one of {', '.join(JUDGE_TYPES)}"
            )
        if self.type == "pairrm" and self.model is None:
            self.model = "llm-blender/PairRM"
        if self.batch_size is None or int(self.batch_size) < 1:
            raise ValueError(f"judge.batch_size: must be >= 1, got {self.batch_size}")
        if self.max_length is not None and int(self.max_length) < 1:
            raise ValueError(f"judge.max_length: must be >= 1 or None, got {self.max_length}")
        if self.type == "callable" and not self.callable:
            raise ValueError("judge.callable: type=callable needs callable='module:function' or a function object")
        if self.callable is not None and not isinstance(self.callable, str) and not callable(self.callable):
            raise ValueError(f"judge.callable: expected 'module:function' or a function, got {type(self.callable).__name__}")
        if self.type in ("reward_model", "gpm") and not self.model:
            raise ValueError(f"judge.model: type={self.type} needs a model path or Hub repo id")
        if self.output_kind is not None and self.output_kind not in ("probs", "logits"):
            raise ValueError(
                f"judge.output_kind: must be 'probs' or 'logits', got {self.output_kind!r}"
            )


def resolve_device_and_dtype(device: str | None = None, dtype: str = "auto", gpu_auto: str = "bfloat16"):
    """(torch.device, torch.dtype) for a judge: cuda when available; "auto" is fp32 on CPU and `gpu_auto` on GPU
    (PairRM passes float32: its default is exact, equal to llm-blender, on every device)."""
    import torch

    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dtype in (None, "auto"):
        dtype = gpu_auto if dev.type == "cuda" else "float32"
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"judge.dtype: must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return dev, names[dtype]


def load_judge(config: JudgeConfig | dict) -> PairwiseJudge:
    """Build the judge named by `config.type`, importing its module only now (keeps imports light)."""
    if isinstance(config, dict):
        config = JudgeConfig(**config)
    module_name, class_name = _JUDGE_CLASSES[config.type]
    module = importlib.import_module(f"sppo_hub.judges.{module_name}")
    judge_cls = getattr(module, class_name)
    return judge_cls.from_config(config)
