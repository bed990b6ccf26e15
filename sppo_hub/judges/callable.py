"""A judge backed by any Python function: oracles, rule-based preferences, research judges.

`fn(prompt, response_a, response_b) -> P(a beats b)` is called once per ordered pair (both
presentation orders, so a position-biased function is handled like any other judge). With
`batched=True`, `fn(prompts, responses_a, responses_b) -> sequence of P` gets every ordered pair
of a batch at once. `output_kind="logits"` declares that fn returns logits instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .base import JudgeConfig, PairwiseJudge, validate_judge_inputs


def load_callable(spec: str) -> Callable:
    """Resolve "package.module:function" or "path/to/file.py:function" to the function."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"judge.callable: expected 'module:function' or 'file.py:function', got {spec!r}")
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"judge.callable: expected 'module:function', got {spec!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"judge.callable: file {path} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"_sppo_hub_judge_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ValueError(f"judge.callable: cannot import module {module_name!r} ({err}); check PYTHONPATH") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"judge.callable: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"judge.callable: {spec!r} is not callable")
    return obj


class CallableJudge(PairwiseJudge):
    """Pairwise tables from a user function of (prompt, response_a, response_b)."""

    def __init__(
        self,
        fn: Callable | str,
        batched: bool = False,
        output_kind: str = "probs",
        batch_size: int = 256,
        name: str | None = None,
        show_progress: bool = True,
    ):
        if output_kind not in ("probs", "logits"):
            raise ValueError(f"output_kind: must be 'probs' or 'logits', got {output_kind!r}")
        if isinstance(fn, str):
            name = name or fn
            fn = load_callable(fn)
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.batched = batched
        self.output_kind = output_kind
        self.batch_size = int(batch_size)
        self.name = name or f"callable:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        self.show_progress = show_progress

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "CallableJudge":
        return cls(
            config.callable,
            batched=config.batched,
            output_kind=config.output_kind or "probs",
            batch_size=config.batch_size,
            **config.extra,
        )

    def _check(self, value, where: str) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} returned {value!r} for {where}; it must return a number") from None
        if math.isnan(v) or (self.output_kind == "logits" and math.isinf(v)):
            raise ValueError(f"{self.name} returned {v} for {where}; it must return a finite number")
        if self.output_kind == "probs" and not 0.0 <= v <= 1.0:
            raise ValueError(
                f"{self.name} returned {v} for {where}, outside [0, 1]; if it returns logits, "
                "use output_kind='logits'"
            )
        return v

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        jobs = [(p, i, j) for p, cands in enumerate(responses) for i in range(len(cands)) for j in range(len(cands)) if i != j]
        tables = [np.full((len(c), len(c)), self.diagonal_value, dtype=np.float64) for c in responses]
        step = self.batch_size if self.batched else 1
        with tqdm(total=len(jobs), desc=f"judging ({self.name})", unit="pair", disable=not self.show_progress) as bar:
            for start in range(0, len(jobs), step):
                chunk = jobs[start : start + step]
                if self.batched:
                    outs = list(
                        self.fn(
                            [prompts[p] for p, _, _ in chunk],
                            [responses[p][i] for p, i, _ in chunk],
                            [responses[p][j] for p, _, j in chunk],
                        )
                    )
                    if len(outs) != len(chunk):
                        raise ValueError(f"{self.name} returned {len(outs)} values for a batch of {len(chunk)} pairs")
                else:
                    p, i, j = chunk[0]
                    outs = [self.fn(prompts[p], responses[p][i], responses[p][j])]
                for (p, i, j), value in zip(chunk, outs):
                    tables[p][i, j] = self._check(value, f"prompt {p}, pair ({i} first, {j} second)")
                bar.update(len(chunk))
        return tables
