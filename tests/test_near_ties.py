"""Near-tie re-checking: which responses a small judging error could move out of best / worst (closed forms), and
PairRMJudge(recheck_margin=...) re-judging exactly those pairs with an exact fp32 copy."""

from __future__ import annotations

import numpy as np
import pytest

from sppo_hub.judges.near_ties import near_tie_responses, pairs_touching
from sppo_hub.judges.pairrm import PairRMJudge

PROMPTS = ["What is the capital of France?", "Write a short poem about the sea, please."]
RESPONSES = [
    ["The capital of France is Paris.", "Rome.", "I do not know, maybe it is Paris or Rome, or neither of them."],
    ["The waves are blue and the wind is cold.", "Sea sea sea.", "Blue.", "The sea is wide and deep and old."],
]


def test_near_tie_responses_by_hand():
    # pairwise rule on a probs table: P = (p + 1 - p.T) / 2 = p here (p + p.T = 1), win rate = row mean
    p = np.array([[0.5, 0.6, 0.9, 0.9],
                  [0.4, 0.5, 0.9, 0.9],
                  [0.1, 0.1, 0.5, 0.52],
                  [0.1, 0.1, 0.48, 0.5]])
    wr = p.mean(axis=1)  # 0.725, 0.675, 0.305, 0.295
    np.testing.assert_allclose(wr, [0.725, 0.675, 0.305, 0.295])
    assert near_tie_responses(p, 0.001, kind="probs") == []  # both sides clear by more than the margin
    assert near_tie_responses(p, 0.02, kind="probs") == [2, 3]  # worst: 2 and 3 are 0.01 apart
    assert near_tie_responses(p, 0.06, kind="probs") == [0, 1, 2, 3]  # best: 0 and 1 are 0.05 apart
    with pytest.raises(ValueError, match="margin: must be >= 0"):
        near_tie_responses(p, -0.1, kind="probs")
    # mean_score orders like llm-blender's score s_i = mean_j (l_ij - l_ji): 0 and 1 nearly tied for best
    logits = np.array([[0.0, 0.01, 2.0], [0.0, 0.0, 2.0], [-2.0, -2.0, 0.0]])
    assert near_tie_responses(logits, 0.01, kind="logits", rule="mean_score") == [0, 1]
    assert near_tie_responses(logits, 1e-4, kind="logits", rule="mean_score") == []


def test_pairs_touching():
    assert pairs_touching([], 3) == []
    assert pairs_touching([0], 3) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    assert len(pairs_touching([0, 1], 5)) == 14 and len(pairs_touching([0, 1, 2, 3], 5)) == 20


def test_pairrm_recheck_margin(tiny_pairrm_dir):
    kwargs = dict(device="cpu", batch_size=3, show_progress=False)
    exact = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), **kwargs)
    fast = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), quantize="int8", **kwargs)
    want, rough = exact.pairwise_tables(PROMPTS, RESPONSES), fast.pairwise_tables(PROMPTS, RESPONSES)
    assert max(np.abs(a - b).max() for a, b in zip(want, rough)) > 1e-6  # int8 really is inexact here
    # a margin wider than any win-rate gap: every response is a near tie, every pair re-judged exactly
    judge = PairRMJudge.from_pretrained(str(tiny_pairrm_dir), quantize="int8", recheck_margin=1.0, **kwargs)
    for a, b in zip(want, judge.pairwise_tables(PROMPTS, RESPONSES)):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert judge.last_recheck == {"prompts": 2, "pairs": 3 * 2 + 4 * 3}
    # a vanishing margin: nothing is a near tie, the fast tables come back unchanged
    judge.recheck_margin = 1e-12
    for a, b in zip(rough, judge.pairwise_tables(PROMPTS, RESPONSES)):
        np.testing.assert_allclose(b, a, atol=1e-6)
    assert judge.last_recheck == {"prompts": 0, "pairs": 0}
    # in between: exactly the pairs touching the near ties are exact, the rest are the fast judge's
    from sppo_hub.core.preference import pairwise_probabilities, win_rates

    gaps = sorted(g for t in rough for wr in [np.sort(win_rates(pairwise_probabilities(t)))]
                  for g in (wr[-1] - wr[-2], wr[1] - wr[0]))
    margin = gaps[0] * 1.001  # the closest side is a near tie, the widest is not
    assert gaps[-1] > margin
    judge.recheck_margin = margin
    got_tables = judge.pairwise_tables(PROMPTS, RESPONSES)
    assert 0 < judge.last_recheck["pairs"] < 3 * 2 + 4 * 3
    for fast_table, exact_table, got in zip(rough, want, got_tables):
        near = near_tie_responses(fast_table, margin)
        touched = set(pairs_touching(near, len(got)))
        for i in range(len(got)):
            for j in range(len(got)):
                if i != j:
                    np.testing.assert_allclose(got[i, j], (exact_table if (i, j) in touched else fast_table)[i, j], atol=1e-5)


def test_pairrm_recheck_errors(tiny_pairrm_dir):
    path = str(tiny_pairrm_dir)
    with pytest.raises(ValueError, match="recheck_margin: this judge already computes in exact fp32"):
        PairRMJudge.from_pretrained(path, device="cpu", recheck_margin=0.01)
    with pytest.raises(ValueError, match="recheck_margin: must be > 0"):
        PairRMJudge.from_pretrained(path, device="cpu", quantize="int8", recheck_margin=0)
    with pytest.raises(ValueError, match="recheck_rule: must be one of"):
        PairRMJudge.from_pretrained(path, device="cpu", quantize="int8", recheck_margin=0.01, recheck_rule="bradley")


def test_run_judge_rechecks_under_the_data_rule(tiny_pairrm_dir):
    from sppo_hub.loop.config import DataConfig, RunConfig
    from sppo_hub.judges import JudgeConfig
    from sppo_hub.loop.stages.context import RunContext

    judge = JudgeConfig(type="pairrm", model=str(tiny_pairrm_dir), device="cpu",
                        extra={"quantize": "int8", "recheck_margin": 0.01, "show_progress": False})
    config = RunConfig(judge=judge, data=DataConfig(rule="mean_score"))
    built = RunContext(config=config, manifest=None, console=None).judge()
    assert built.recheck_rule == "mean_score" and built.recheck_margin == 0.01
