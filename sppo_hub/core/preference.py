"""Preference math of one SPPO iteration: raw judge table -> P(y_i > y_j | x) -> win rates -> pair.

Pure numpy functions, no model needed.

Input: a K x K table of a judge's raw outputs for one prompt, `table[i, j]` being its verdict for
the presentation "response i first, response j second", read as "i beats j" (a logit when
`kind="logits"`, a probability when `kind="probs"`). The diagonal is never read.

Rules (`rule=`):

- ``"pairwise"`` (default): the judge's own verdict on the pair, averaged over both presentation
  orders, in probability space:
  ``P_ij = (p_ij + 1 - p_ji) / 2`` with ``p = table`` (probs) or ``p = sigmoid(table)`` (logits).
  The same judge therefore gives the same P whether it reports logits or probabilities, and a
  position bias that adds a constant to every "first" probability cancels exactly.
- ``"pairwise_logit"``: the logit equivalent, ``P_ij = sigmoid((l_ij - l_ji) / 2)`` with
  ``l = table`` (logits) or ``l = logit(table)`` (probs). It cancels a bias that adds a constant
  to every "first" *logit* exactly (the "pairwise" rule cancels that one only to first order),
  but lets one over-confident order dominate the pair. This is the formula proposed in issue #15
  of uclaml/SPPO. Both are defensible; the default averages in probability space, where a
  judge's probabilities and logits give the same P.
- ``"mean_score"``: the paper code's rule, kept to reproduce it. Each response first gets one
  score aggregated from the whole table the way llm-blender's PairRM ``rank(...,
  return_scores=True)`` does ("max_logits" policy): ``s_i = mean_j (l_ij - l_ji)`` over all K
  columns (the diagonal adds 0), with ``l`` the logits (probs are mapped through ``logit``
  first). Then ``P_ij = sigmoid(s_i - s_j)``. This is *not* the judge's verdict on the pair:
  ``s_i - s_j`` mixes in how i and j fared against every other candidate, so in an intransitive
  triple (a > b > c > a) every P collapses to 1/2, and a pair the judge finds close gets a large
  margin when one of the two happens to crush a third response (see tests/test_preference.py).

Defined behaviour on bad input (errors are ``ValueError`` naming the field and the fix):

- K < 2, a non-square table, NaN or +-inf off the diagonal, probabilities outside [0, 1]:
  errors; the batched helpers prefix the prompt index. Probabilities of exactly 0 or 1 are
  clipped to ``[EPS, 1 - EPS]`` only where a logit is needed.
- Ties in win rates: values within ``TIE_ATOL`` of the best (worst) count as tied; the chosen
  response is the lowest index among the best, the rejected one the lowest index among the
  worst other than the chosen one. Deterministic; when all K tie, the pair is (0, 1) and carries
  no preference signal (`is_tie` lets callers drop such prompts).
- Empty responses: the math never sees text; an empty response is judged like any other (a
  sensible judge ranks it low). `sppo_hub.core.data` keeps them for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Kind = Literal["logits", "probs"]
Rule = Literal["pairwise", "pairwise_logit", "mean_score"]

KINDS = ("logits", "probs")
RULES = ("pairwise", "pairwise_logit", "mean_score")
EPS = 1e-7  # clip for probabilities that must become logits
TIE_ATOL = 1e-9  # win rates closer than this are tied


def sigmoid(x: np.ndarray) -> np.ndarray:
    # numerically stable on both tails
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def validate_table(table, kind: str = "logits") -> np.ndarray:
    """Check one raw judge table and return it as a float64 array (diagonal set to neutral)."""
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
    arr = np.asarray(table, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"table: expected a square K x K matrix, got shape {arr.shape}")
    k = arr.shape[0]
    if k < 2:
        raise ValueError(f"table: need K >= 2 responses to compare, got K={k}; sample more responses")
    off = ~np.eye(k, dtype=bool)
    bad = off & ~np.isfinite(arr)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"table[{i}, {j}] is {float(arr[i, j])}: the judge returned NaN/inf for this pair; "
            "re-judge the prompt or drop it"
        )
    if kind == "probs":
        out = off & ((arr < 0.0) | (arr > 1.0))
        if out.any():
            i, j = map(int, np.argwhere(out)[0])
            raise ValueError(
                f"table[{i}, {j}] = {float(arr[i, j])} is outside [0, 1] for kind='probs'; "
                "if the judge returns logits, pass kind='logits'"
            )
    arr = arr.copy()
    np.fill_diagonal(arr, 0.0 if kind == "logits" else 0.5)
    return arr


def mean_scores(table, kind: str = "logits") -> np.ndarray:
    """Per-response scores aggregated like llm-blender's PairRM ranker: s_i = mean_j (l_ij - l_ji)."""
    arr = validate_table(table, kind)
    logits = arr if kind == "logits" else logit(arr)
    np.fill_diagonal(logits, 0.0)
    return (logits - logits.T).mean(axis=1)


def pairwise_probabilities(table, kind: str = "logits", rule: str = "pairwise") -> np.ndarray:
    """K x K matrix P with P_ij = P(y_i > y_j | x), P + P.T = 1 and 0.5 on the diagonal."""
    if rule not in RULES:
        raise ValueError(f"rule: must be one of {RULES}, got {rule!r}")
    arr = validate_table(table, kind)
    if rule == "pairwise":
        p = arr if kind == "probs" else sigmoid(arr)
        P = (p + 1.0 - p.T) / 2.0
    elif rule == "pairwise_logit":
        l = arr if kind == "logits" else logit(arr)
        np.fill_diagonal(l, 0.0)
        P = sigmoid((l - l.T) / 2.0)
    else:
        s = mean_scores(arr, kind)
        P = sigmoid(s[:, None] - s[None, :])
    return _make_complementary(P)


def _make_complementary(P: np.ndarray) -> np.ndarray:
    # Keep the upper triangle and mirror 1 - P below it, so P + P.T = 1 holds to rounding and
    # the diagonal is exactly 0.5 whatever the rule's arithmetic did.
    upper = np.triu(P, k=1)
    out = upper + np.tril(1.0 - upper.T, k=-1)
    np.fill_diagonal(out, 0.5)
    return out


def _validate_P(P) -> np.ndarray:
    arr = np.asarray(P, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"P: expected a square K x K matrix, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"P: need K >= 2 responses, got K={arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError("P: contains NaN or inf; build it with pairwise_probabilities")
    if (arr < 0).any() or (arr > 1).any():
        raise ValueError("P: probabilities must lie in [0, 1]; build it with pairwise_probabilities")
    if not np.allclose(arr + arr.T, 1.0, atol=1e-6):
        raise ValueError("P: must satisfy P + P.T = 1 (a preference matrix); build it with pairwise_probabilities")
    return arr


def win_rates(P, include_diagonal: bool = True) -> np.ndarray:
    """P(y_i > pi_t | x) for each response: the row mean of P.

    With `include_diagonal=True` (the paper's estimate) the 0.5 self-comparison counts, which
    shrinks win rates toward 1/2 by a factor (K-1)/K; without it, the mean over the K-1 others.
    """
    arr = _validate_P(P)
    k = arr.shape[0]
    if include_diagonal:
        return arr.mean(axis=1)
    return (arr.sum(axis=1) - np.diag(arr)) / (k - 1)


def select_pair(win_rates: Sequence[float] | np.ndarray) -> tuple[int, int]:
    """(chosen, rejected) = (best, worst) by win rate; ties go to the lowest index (module docstring)."""
    wr = np.asarray(win_rates, dtype=np.float64)
    if wr.ndim != 1 or wr.shape[0] < 2:
        raise ValueError(f"win_rates: need a 1-D array of K >= 2 values, got shape {wr.shape}")
    if not np.isfinite(wr).all():
        raise ValueError("win_rates: contains NaN or inf")
    best = np.flatnonzero(wr >= wr.max() - TIE_ATOL)
    chosen = int(best[0])
    others = np.delete(np.arange(wr.shape[0]), chosen)
    rest = wr[others]
    worst = others[rest <= rest.min() + TIE_ATOL]
    return chosen, int(worst[0])


def is_tie(win_rates: Sequence[float] | np.ndarray) -> bool:
    """True when all win rates are tied, so the selected pair carries no preference."""
    wr = np.asarray(win_rates, dtype=np.float64)
    return bool(wr.max() - wr.min() <= TIE_ATOL)


# ----- batched helpers over many prompts (tables may have different K) -----


def _with_index(fn, idx: int, ids, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        where = f"prompt {idx}" if ids is None else f"prompt {idx} (prompt_id={ids[idx]})"
        raise ValueError(f"{where}: {err}") from None


def batch_pairwise_probabilities(
    tables: Sequence, kind: str = "logits", rule: str = "pairwise", prompt_ids: Sequence | None = None
) -> list[np.ndarray]:
    """`pairwise_probabilities` for every prompt; errors name the prompt index (and id)."""
    return [_with_index(pairwise_probabilities, i, prompt_ids, t, kind, rule) for i, t in enumerate(tables)]


def batch_win_rates(Ps: Sequence, include_diagonal: bool = True) -> list[np.ndarray]:
    """`win_rates` for every prompt."""
    return [_with_index(win_rates, i, None, P, include_diagonal) for i, P in enumerate(Ps)]


def batch_select_pairs(all_win_rates: Sequence) -> list[tuple[int, int]]:
    """`select_pair` for every prompt."""
    return [_with_index(select_pair, i, None, wr) for i, wr in enumerate(all_win_rates)]


def preferences_from_tables(
    tables: Sequence,
    kind: str = "logits",
    rule: str = "pairwise",
    include_diagonal: bool = True,
    prompt_ids: Sequence | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[int, int]]]:
    """Tables -> (P matrices, win rates, (chosen, rejected) pairs), one of each per prompt."""
    Ps = batch_pairwise_probabilities(tables, kind, rule, prompt_ids)
    wrs = batch_win_rates(Ps, include_diagonal)
    return Ps, wrs, batch_select_pairs(wrs)
