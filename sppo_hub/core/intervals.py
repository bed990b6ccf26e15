"""95% intervals for the held-out numbers: accuracy, win rate and the accuracy gain over pi_0.

Held-out evaluation draws `evaluation.compare_samples` answers per question. Answers to the same question
are not independent (a question the model knows it gets right every time), so an interval that counted
N x S answers as independent would be too narrow. The unit of sampling is the question:

- `wilson_interval(k, n)`: the Wilson score interval of a proportion of independent trials. Used for
  accuracy with one answer per question (then the answers are independent draws over questions); unlike
  p +- 1.96 sqrt(p(1-p)/n) it stays inside [0, 1] and is not degenerate at 0 or 1 correct.
- `mean_interval(values)`: mean +- z * sd / sqrt(N) over per-question values (the normal interval of a
  mean, clustered by question). Used for accuracy with several answers per question (each question's share
  of correct answers), for win rates (each question's mean P(pi_t beats pi_0) over all pairs of their
  answers) and for the gain (each question's accuracy of pi_t minus that of pi_0: paired by question, so the
  questions' difficulty cancels). With the demo's 100+ questions the normal approximation is adequate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of `successes` out of `n` independent trials."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n={n}, need at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes={successes} not in [0, n={n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """mean +- z * s / sqrt(N), s the sample standard deviation of the N per-question values."""
    n = len(values)
    if n < 2:
        raise ValueError(f"mean_interval: {n} value(s), need at least 2 questions for an interval")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = z * sd / math.sqrt(n)
    return mean - half, mean + half


def accuracy_interval(per_question: Sequence[Sequence[bool]]) -> tuple[float, float]:
    """95% interval of held-out accuracy from each question's verdicts (one or several answers each)."""
    if all(len(v) == 1 for v in per_question):
        return wilson_interval(sum(bool(v[0]) for v in per_question), len(per_question))
    return mean_interval([sum(map(bool, v)) / len(v) for v in per_question])


def fmt_interval(value: float, interval: Sequence[float] | None, percent: bool = False) -> str:
    """'56.2% [48, 64]' (interval in whole percent) or '0.641 [0.58, 0.70]'; the value alone without an interval."""
    if percent:
        text = f"{value:.1%}"
        return text if interval is None else f"{text} [{interval[0] * 100:.0f}, {interval[1] * 100:.0f}]"
    text = f"{value:.3f}"
    return text if interval is None else f"{text} [{interval[0]:.2f}, {interval[1]:.2f}]"


def fmt_gain(value: float, interval: Sequence[float] | None) -> str:
    """A difference of two shares in percentage points: '+14.8 [+11, +19]'."""
    text = f"{value * 100:+.1f}"
    return text if interval is None else f"{text} [{interval[0] * 100:+.0f}, {interval[1] * 100:+.0f}]"
