"""Judges: anything that yields P(y_i > y_j | x) as a raw K x K pairwise table.

Model-backed implementations are imported lazily through `load_judge` (or by importing their module),
so `import sppo_hub.judges` stays light: PairRM, reward model, GPM and LLM judges pull in torch.
`CallableJudge` (any Python function as a judge) needs nothing heavy and is exported here.
"""

from .base import (
    JUDGE_TYPES,
    JudgeConfig,
    PairwiseJudge,
    load_judge,
    resolve_device_and_dtype,
    validate_judge_inputs,
)
from .callable import CallableJudge

__all__ = [
    "CallableJudge",
    "JUDGE_TYPES",
    "JudgeConfig",
    "PairwiseJudge",
    "load_judge",
    "resolve_device_and_dtype",
    "validate_judge_inputs",
]
