"""The rule-based correctness judge: a verifiable preference, offline and exact.

For tasks with a checkable answer (arithmetic, short-answer math), the preference needs no model:
a response whose final answer is correct beats one whose answer is wrong or missing, and among
responses that are equally right (or equally wrong) the more concise one is preferred. This is the
preference verl's SPPO recipe trains on MATH with; at quickstart size it lets a 135M model learn
something measurable on a CPU in minutes, where a small LLM judging its own answers gives noise.

Where the reference answer comes from, per prompt (first match wins):
- `references`: a mapping {prompt: answer}, or a file / Hub dataset with a prompt column and a
  reference-answer column (e.g. the prompts file itself, with `reference_column="answer"`);
- `checker`: "arithmetic" computes it from the prompt ("What is 17 + 25?" -> 42), or
  "module:function" / "file.py:function" maps a prompt to its reference (or None).
A prompt with no reference is unverifiable: only conciseness decides (`require_reference=True`
makes it an error instead). The answer of a response is its last number, as in GSM8K-style graders.

P(a beats b | x), both presentation orders alike (the rule has no position bias):
- correct vs not correct: `correct_prob` (1.0 by default) for the correct one;
- otherwise 0.5 + concise_weight * tanh((len(b) - len(a)) / length_scale), lengths in characters:
  equally long answers tie at 0.5.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from .base import JudgeConfig, PairwiseJudge, validate_judge_inputs

CHECKERS = ("arithmetic",)
# A number as a person writes it: optional sign, digit groups with commas, optional decimals.
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|-?\d+(?:\.\d+)?")
# "What is 17 + 25?", "Compute 6 x 7.", "What is 48 / 6?": chains of numbers and operators in a prompt;
# the checker answers only a chain of exactly two operands and one operator.
_OPERAND, _OPERATOR = r"-?\d+(?:\.\d+)?", r"[+\-*/x×÷−]"
_CHAIN = re.compile(rf"{_OPERAND}(?:\s*{_OPERATOR}\s*{_OPERAND})+")
_BINARY = re.compile(rf"({_OPERAND})\s*({_OPERATOR})\s*({_OPERAND})")
_OPS = {"+": operator.add, "-": operator.sub, "−": operator.sub, "*": operator.mul, "x": operator.mul,
        "×": operator.mul, "/": operator.truediv, "÷": operator.truediv}


def parse_number(text: str) -> Fraction | None:
    """'1,234' -> 1234, '-3.50' -> -7/2; None when `text` is not a number."""
    try:
        return Fraction(str(text).strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(response: str) -> Fraction | None:
    """The final answer of a response: its last number (None when it has none)."""
    found = _NUMBER.findall(response or "")
    return parse_number(found[-1]) if found else None


def arithmetic_reference(prompt: str) -> Fraction | None:
    """The value of the single binary arithmetic expression in a prompt, or None (no or several expressions)."""
    chains = _CHAIN.findall(prompt or "")
    binary = _BINARY.fullmatch(chains[0]) if len(chains) == 1 else None
    if binary is None:
        return None
    left, op, right = binary.groups()
    a, b = Fraction(left), Fraction(right)
    if op in "/÷" and b == 0:
        return None
    return _OPS[op](a, b)


def is_correct(response: str, reference) -> bool:
    """True when the response's final answer equals the reference numerically."""
    answer, target = extract_answer(response), parse_number(reference)
    return answer is not None and target is not None and answer == target


def _load_checker(spec: str | Callable) -> Callable[[str], object]:
    if callable(spec):
        return spec
    if spec == "arithmetic":
        return arithmetic_reference
    if isinstance(spec, str) and ":" in spec:
        from .callable import load_callable

        return load_callable(spec)
    raise ValueError(
        f"judge.extra.checker: unknown checker {spec!r}; use 'arithmetic' or 'module:function' "
        "(a function prompt -> reference answer or None)"
    )


def load_references(source: str | Mapping, prompt_column: str = "prompt", reference_column: str = "answer",
                    split: str = "train") -> dict[str, str]:
    """{prompt: reference answer} from a mapping, a local .jsonl/.json/.csv/.parquet file, or a Hub dataset id."""
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    from datasets import load_dataset

    formats = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    path = Path(str(source))
    if path.suffix in formats:
        if not path.is_file():
            raise FileNotFoundError(f"judge.extra.references: {path} does not exist; pass the prompts file "
                                    "with its reference-answer column (or use checker: arithmetic)")
        ds = load_dataset(formats[path.suffix], data_files=str(path), split="train")
    else:
        try:
            ds = load_dataset(str(source), split=split)
        except Exception as err:  # the Hub client raises many types: say what was asked for
            raise ValueError(f"judge.extra.references: cannot load {source!r} ({type(err).__name__}: {err})") from None
    for column in (prompt_column, reference_column):
        if column not in ds.column_names:
            raise ValueError(f"judge.extra.references: column {column!r} not in {source}; columns are "
                             f"{', '.join(ds.column_names)} (set prompt_column / reference_column)")
    return {str(p): str(a) for p, a in zip(ds[prompt_column], ds[reference_column])}


class CorrectnessJudge(PairwiseJudge):
    """P(a beats b) by rule: a correct final answer beats a wrong one; among equals, concise beats long."""

    output_kind = "probs"

    def __init__(self, references: str | Mapping | None = None, checker: str | Callable | None = "arithmetic",
                 prompt_column: str = "prompt", reference_column: str = "answer", correct_prob: float = 1.0,
                 concise_weight: float = 0.25, length_scale: float = 40.0, require_reference: bool = False,
                 name: str = "rule-based correctness judge"):
        if not 0.5 < float(correct_prob) <= 1.0:
            raise ValueError(f"judge.extra.correct_prob: must be in (0.5, 1], got {correct_prob}")
        if not 0.0 <= float(concise_weight) < 0.5:
            raise ValueError(f"judge.extra.concise_weight: must be in [0, 0.5), got {concise_weight}")
        if float(length_scale) <= 0:
            raise ValueError(f"judge.extra.length_scale: must be > 0, got {length_scale}")
        if references is None and checker is None:
            raise ValueError("judge: the correctness judge needs references (a file with a reference-answer "
                             "column) or a checker ('arithmetic' or 'module:function')")
        self.references = {} if references is None else load_references(references, prompt_column, reference_column)
        self.checker = None if checker is None else _load_checker(checker)
        self.correct_prob = float(correct_prob)
        self.concise_weight = float(concise_weight)
        self.length_scale = float(length_scale)
        self.require_reference = bool(require_reference)
        self.name = name

    @classmethod
    def from_config(cls, config: JudgeConfig) -> "CorrectnessJudge":
        return cls(**config.extra)

    def reference(self, prompt: str):
        """The reference answer of a prompt, or None when neither the references nor the checker know it."""
        if prompt in self.references:
            return self.references[prompt]
        return self.checker(prompt) if self.checker is not None else None

    def correctness(self, prompt: str, responses: list[str]) -> list[bool | None]:
        """Per response: True/False against the reference, None for every response of an unverifiable prompt."""
        target = self.reference(prompt)
        if target is None:
            if self.require_reference:
                raise ValueError(f"judge: no reference answer for prompt {prompt[:80]!r}; add it to the "
                                 "references file or set require_reference: false")
            return [None] * len(responses)
        return [is_correct(r, target) for r in responses]

    def accuracy(self, prompts: list[str], responses: list[list[str]]) -> float | None:
        """Share of correct responses over verifiable prompts (None when no prompt is verifiable)."""
        verdicts = [v for p, rs in zip(prompts, responses) for v in self.correctness(p, rs) if v is not None]
        return sum(verdicts) / len(verdicts) if verdicts else None

    def preference(self, correct_a: bool | None, correct_b: bool | None, a: str, b: str) -> float:
        """P(a beats b) from the two verdicts and lengths (the module docstring's rule)."""
        if bool(correct_a) != bool(correct_b):
            return self.correct_prob if correct_a else 1.0 - self.correct_prob
        return 0.5 + self.concise_weight * math.tanh((len(b.strip()) - len(a.strip())) / self.length_scale)

    def pairwise_tables(self, prompts: list[str], responses: list[list[str]]) -> list[np.ndarray]:
        validate_judge_inputs(prompts, responses)
        tables = []
        for prompt, cands in zip(prompts, responses):
            verdicts = self.correctness(prompt, cands)
            k = len(cands)
            table = np.full((k, k), 0.5)
            for i in range(k):
                for j in range(k):
                    if i != j:
                        table[i, j] = self.preference(verdicts[i], verdicts[j], cands[i], cands[j])
            tables.append(table)
        return tables
