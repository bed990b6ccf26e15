"""Near ties: the responses whose place as best or worst a small judging error could change.

An inexact judge (bf16 or int8 arithmetic) moves every win rate a little. Where the best response leads the
second by more than that, the choice is the exact judge's; where two responses are nearly tied for best (or for
worst), it can flip. `PairRMJudge(recheck_margin=...)` re-judges exactly the pairs that decide those places, so the
chosen / rejected responses are the exact judge's whenever the fast judge's error in every win rate stays below
margin / 2: if the exact best b* were outside the near-tie set S = {i : w_i >= max(w) - margin} of the fast win
rates w, then w_b* < max(w) - margin, and exact-vs-fast errors below margin / 2 would make b* lose to the fast
best in the exact rates too. Re-judging every pair that involves a member of S makes its members' rates exact.

Win rates follow `sppo_hub.core.preference` (the run's `data.rule`, the paper's diagonal); under "mean_score" they
order responses exactly as llm-blender's score does. Pure functions, tested against hand-computed tables.
"""

from __future__ import annotations

import numpy as np

from ..core.preference import pairwise_probabilities, win_rates


def near_tie_responses(table, margin: float, kind: str = "logits", rule: str = "pairwise") -> list[int]:
    """Sorted indices of the responses within `margin` (in win rate) of the best or of the worst one, for each side
    where there are at least two such responses; [] when best and worst are both clear by more than `margin`."""
    if margin < 0:
        raise ValueError(f"margin: must be >= 0, got {margin}")
    wr = win_rates(pairwise_probabilities(np.asarray(table, dtype=np.float64), kind, rule))
    near: set[int] = set()
    for side in (np.flatnonzero(wr >= wr.max() - margin), np.flatnonzero(wr <= wr.min() + margin)):
        if len(side) >= 2:
            near.update(int(i) for i in side)
    return sorted(near)


def pairs_touching(responses: list[int], k: int) -> list[tuple[int, int]]:
    """Every ordered pair (i, j), i != j, of K responses in which i or j is one of `responses`: the presentations
    that decide those responses' win rates."""
    chosen = set(responses)
    return [(i, j) for i in range(k) for j in range(k) if i != j and (i in chosen or j in chosen)]
