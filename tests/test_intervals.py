"""The 95% intervals printed beside held-out accuracy, win rates and the gain (sppo_hub/core/intervals.py)."""

from __future__ import annotations

import math

import pytest

from sppo_hub.core.intervals import Z95, accuracy_interval, fmt_gain, fmt_interval, mean_interval, wilson_interval


def test_wilson_matches_its_closed_form():
    z2 = Z95 ** 2
    # no successes: [0, z^2 / (n + z^2)]
    lo, hi = wilson_interval(0, 40)
    assert lo == 0.0 and hi == pytest.approx(z2 / (40 + z2))
    # half of n: centred on 1/2 with half-width z sqrt(n/4 + z^2/4) / (n + z^2)
    lo, hi = wilson_interval(32, 64)
    half = Z95 * math.sqrt(64 / 4 + z2 / 4) / (64 + z2)
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    # symmetric in successes and failures; 21/64 -> [0.226, 0.450] (as scipy.stats.binomtest(21, 64).proportion_ci("wilson"))
    lo, hi = wilson_interval(21, 64)
    assert (1 - hi, 1 - lo) == pytest.approx(wilson_interval(43, 64))
    assert (round(lo, 3), round(hi, 3)) == (0.226, 0.450)
    with pytest.raises(ValueError, match="n=0"):
        wilson_interval(0, 0)


def test_mean_interval_is_the_normal_interval_of_a_mean():
    values = [0.0, 1.0] * 50  # mean 1/2, sample sd sqrt(100 / 4 / 99)
    lo, hi = mean_interval(values)
    half = Z95 * math.sqrt(100 / 4 / 99) / 10
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert mean_interval([0.3] * 10) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="at least 2"):
        mean_interval([1.0])


def test_accuracy_interval_clusters_several_answers_by_question():
    one = [[True]] * 20 + [[False]] * 20
    assert accuracy_interval(one) == wilson_interval(20, 40)
    # 4 identical answers per question carry no more information than one: the interval stays as wide
    four = [[True] * 4] * 20 + [[False] * 4] * 20
    lo, hi = accuracy_interval(four)
    lo1, hi1 = wilson_interval(20, 40)
    assert hi - lo == pytest.approx(hi1 - lo1, rel=0.1)
    # ... where 160 independent answers would give an interval half as wide
    lo160, hi160 = wilson_interval(80, 160)
    assert hi160 - lo160 < 0.6 * (hi - lo)


def test_format():
    assert fmt_interval(0.5625, (0.44, 0.684), percent=True) == "56.2% [44, 68]"
    assert fmt_gain(0.148, (0.106, 0.191)) == "+14.8 [+11, +19]" and fmt_gain(-0.02, None) == "-2.0"
    assert fmt_interval(0.641, (0.58, 0.702)) == "0.641 [0.58, 0.70]"
    assert fmt_interval(0.641, None) == "0.641"
