"""Closed-form checks of sppo_hub.core.preference (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sppo_hub.core import preference as pref


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_pairwise_probs_by_hand_3x3():
    # table[i, j] = p(i shown first beats j); diagonal unused (NaN allowed there)
    table = np.array(
        [
            [np.nan, 0.9, 0.6],
            [0.3, np.nan, 0.2],
            [0.5, 0.7, np.nan],
        ]
    )
    P = pref.pairwise_probabilities(table, kind="probs")
    # P_01 = (0.9 + 1 - 0.3)/2 = 0.8 ; P_02 = (0.6 + 1 - 0.5)/2 = 0.55 ; P_12 = (0.2 + 1 - 0.7)/2 = 0.25
    expected = np.array([[0.5, 0.8, 0.55], [0.2, 0.5, 0.25], [0.45, 0.75, 0.5]])
    np.testing.assert_allclose(P, expected, atol=1e-12)
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-15)
    # win rates: with the diagonal (paper) the row mean over 3; without, over the 2 others
    np.testing.assert_allclose(pref.win_rates(P), [1.85 / 3, 0.95 / 3, 1.7 / 3])
    np.testing.assert_allclose(pref.win_rates(P, include_diagonal=False), [0.675, 0.225, 0.6])
    assert pref.select_pair(pref.win_rates(P)) == (0, 1)


def test_symmetric_judge_gives_table_back():
    rng = np.random.default_rng(0)
    upper = np.triu(rng.uniform(size=(5, 5)), 1)
    table = upper + np.tril(1 - upper.T, -1)
    np.fill_diagonal(table, 0.5)
    for rule in ("pairwise", "pairwise_logit"):
        np.testing.assert_allclose(pref.pairwise_probabilities(table, "probs", rule), table, atol=1e-12)


def test_logits_and_probs_of_same_judge_agree():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 4)) * 3
    probs = 1 / (1 + np.exp(-logits))
    for rule in pref.RULES:
        np.testing.assert_allclose(
            pref.pairwise_probabilities(logits, "logits", rule),
            pref.pairwise_probabilities(probs, "probs", rule),
            atol=1e-6,
        )


def test_position_bias_cancels():
    # true preference d (antisymmetric); a judge that favours whoever is shown first by +b
    d = np.array([[0.0, 0.2, 0.1], [-0.2, 0.0, -0.15], [-0.1, 0.15, 0.0]])
    b = 0.12
    true_P = 0.5 + d
    biased_probs = true_P + b
    np.testing.assert_allclose(pref.pairwise_probabilities(biased_probs, "probs"), true_P, atol=1e-12)
    # in logit space the bias cancels exactly with the logit rule
    dl = np.array([[0.0, 1.5, -0.4], [-1.5, 0.0, 2.0], [0.4, -2.0, 0.0]])
    P = pref.pairwise_probabilities(dl + 0.8, "logits", "pairwise_logit")
    np.testing.assert_allclose(P, 1 / (1 + np.exp(-dl)), atol=1e-12)
    # the naive reading of one order keeps the bias: P_01 would be sigma(2.3) instead of sigma(1.5)
    assert abs(sig(2.3) - P[0, 1]) > 0.05


def test_mean_score_vs_pairwise_issue_15():
    # A symmetric judge: a vs b is close (logit 0.2), a crushes c (6), b vs c even (0).
    l = np.array([[0.0, 0.2, 6.0], [-0.2, 0.0, 0.0], [-6.0, 0.0, 0.0]])
    P_pair = pref.pairwise_probabilities(l, "logits", "pairwise")
    P_mean = pref.pairwise_probabilities(l, "logits", "mean_score")
    # pairwise: the judge's own verdict on (a, b): sigma(0.2) = 0.5498
    assert P_pair[0, 1] == pytest.approx(sig(0.2))
    # mean_score: s_i = mean_j (l_ij - l_ji): s_a = (0 + 0.4 + 12)/3, s_b = (-0.4 + 0 + 0)/3
    s = pref.mean_scores(l, "logits")
    np.testing.assert_allclose(s, [12.4 / 3, -0.4 / 3, -12.0 / 3])
    # so P_ab = sigma(12.8/3) = 0.986: a near coin flip becomes near certain because a beat c
    assert P_mean[0, 1] == pytest.approx(sig(12.8 / 3))
    assert P_mean[0, 1] - P_pair[0, 1] > 0.4
    # b vs c: the judge says even (0.5); mean_score says b wins sigma(11.6/3) = 0.98
    assert P_pair[1, 2] == pytest.approx(0.5)
    assert P_mean[1, 2] == pytest.approx(sig(11.6 / 3))
    # even K=2 differs: s_i averages l_ij - l_ji, twice the logit, so sigma(2l) instead of sigma(l)
    two = np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert pref.pairwise_probabilities(two, "logits", "mean_score")[0, 1] == pytest.approx(sig(2.0))
    assert pref.pairwise_probabilities(two, "logits")[0, 1] == pytest.approx(sig(1.0))


def test_intransitive_cycle_is_erased_by_mean_score():
    l = np.array([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])  # a>b>c>a
    np.testing.assert_allclose(pref.pairwise_probabilities(l, "logits", "mean_score"), 0.5)
    P = pref.pairwise_probabilities(l, "logits")
    assert P[0, 1] == pytest.approx(sig(1.0)) and P[2, 0] == pytest.approx(sig(1.0))


def test_ties_lowest_index_and_distinct_pair():
    assert pref.select_pair([0.3, 0.7, 0.7, 0.3]) == (1, 0)
    assert pref.select_pair([0.5, 0.5, 0.5]) == (0, 1)
    assert pref.is_tie([0.5, 0.5 + 1e-12, 0.5])
    assert not pref.is_tie([0.5, 0.6])
    # floating noise below TIE_ATOL counts as a tie
    assert pref.select_pair([0.6, 0.6 + 1e-12, 0.1]) == (0, 2)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="K >= 2"):
        pref.pairwise_probabilities(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="square"):
        pref.pairwise_probabilities(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"table\[0, 1\] = 1.5 is outside \[0, 1\].*kind='logits'"):
        pref.pairwise_probabilities(np.array([[0.5, 1.5], [0.2, 0.5]]), kind="probs")
    with pytest.raises(ValueError, match=r"table\[1, 0\] is nan"):
        pref.pairwise_probabilities(np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="rule"):
        pref.pairwise_probabilities(np.zeros((2, 2)), rule="bradley")
    with pytest.raises(ValueError, match="kind"):
        pref.pairwise_probabilities(np.zeros((2, 2)), kind="scores")
    with pytest.raises(ValueError, match=r"P \+ P.T = 1"):
        pref.win_rates(np.array([[0.5, 0.9], [0.9, 0.5]]))
    with pytest.raises(ValueError, match="win_rates"):
        pref.select_pair([0.4])
    # batched helpers name the prompt
    good = np.zeros((2, 2))
    bad = np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"prompt 1 \(prompt_id=17\): table\[0, 1\]"):
        pref.batch_pairwise_probabilities([good, bad], prompt_ids=[16, 17])


def test_batched_ragged_k():
    tables = [np.array([[0, 2.0], [-2.0, 0]]), np.array([[0, 1, -1], [-1, 0, 0.5], [1, -0.5, 0]])]
    Ps, wrs, pairs = pref.preferences_from_tables(tables, kind="logits")
    assert [P.shape for P in Ps] == [(2, 2), (3, 3)]
    assert pairs[0] == (0, 1)
    # prompt 2: P_01 = sig(1), P_02 = sig(-1), P_12 = sig(0.5)
    w = [(0.5 + sig(1) + sig(-1)) / 3, (0.5 + sig(-1) + sig(0.5)) / 3, (0.5 + sig(1) + sig(-0.5)) / 3]
    np.testing.assert_allclose(wrs[1], w)
    assert pairs[1] == (int(np.argmax(w)), int(np.argmin(w)))
