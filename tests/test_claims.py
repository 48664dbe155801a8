"""The decision helpers every claim reads: three-valued verdicts from 95% intervals, the minimum number of
questions, interval means over layer ranges, and the stability check on two halves of the questions."""

import math

import numpy as np
import pandas as pd
import pytest

from flowutils.paper import claims as C


@pytest.mark.parametrize("lo, hi, threshold, direction, expected", [
    (-9.0, -6.0, -5.0, "below", True),  # wholly below the bar
    (-4.0, 3.0, -5.0, "below", False),  # wholly above it: cleared on the other side
    (-7.0, -3.0, -5.0, "below", None),  # straddles it
    (1.0, 2.0, 0.0, "above", True),
    (-2.0, -1.0, 0.0, "above", False),
    (-1.0, 1.0, 0.0, "above", None),
    (0.0, 0.0, 0.0, "above", None),  # touching is not clearing
    (math.nan, 1.0, 0.0, "above", None),
])
def test_decide_reads_the_interval(lo, hi, threshold, direction, expected):
    assert C.decide(lo, hi, threshold, direction) is expected


def test_decide_needs_the_minimum_number_of_questions():
    assert C.MIN_QUESTIONS == 10
    assert C.decide(-9, -8, -5, "below", n=9) is None
    assert C.decide(-9, -8, -5, "below", n=10) is True
    with pytest.raises(ValueError, match="direction"):
        C.decide(0, 1, 0, "sideways")


def test_three_valued_and_and_majority():
    assert C.all_of([True, True]) is True
    assert C.all_of([True, None]) is None
    assert C.all_of([None, False]) is False
    assert C.all_of([]) is None
    assert C.most_of([True, True, None]) is True  # 2 of 3
    assert C.most_of([True, None, None]) is None  # could reach 3 of 3
    assert C.most_of([True, False, None, None]) is None  # could reach 3 of 4
    assert C.most_of([True, False, False, None]) is False  # at most 2 of 4: not more than half
    assert C.most_of([]) is None


def test_mean_estimate_of_constant_and_spread_values():
    e = C.mean_estimate("drop", [-20.0] * 12, -5.0)
    assert (e.value, e.lo, e.hi, e.n) == (-20.0, -20.0, -20.0, 12) and e.holds is True
    spread = C.mean_estimate("drop", [-30.0, 20.0] * 6, -5.0)  # mean -5: straddles
    assert spread.value == pytest.approx(-5.0) and spread.lo < -5 < spread.hi and spread.holds is None
    few = C.mean_estimate("drop", [-20.0] * 9, -5.0)
    assert few.holds is None and "(n=9)" in str(few)
    assert C.mean_estimate("drop", [], -5.0).n == 0


def test_curve_and_difference_estimates():
    v = np.tile([0.0, 1.0, 3.0], (12, 1))
    e = C.curve_estimate("argmax", v, lambda m: m.argmax(-1).astype(float), 1.5, "above")
    assert (e.value, e.lo, e.hi) == (2.0, 2.0, 2.0) and e.holds is True
    d = C.difference_estimate("a - b", [0.6] * 12, [0.2] * 12, 0.0, "above")
    assert d.value == pytest.approx(0.4) and d.holds is True
    assert C.difference_estimate("a - b", [0.2] * 12, [0.6] * 12, 0.0, "above").holds is False


def test_range_means_average_per_question():
    t = pd.DataFrame({"sample_id": ["a", "a", "a", "b", "b", "b"], "layer": [0, 1, 2] * 2,
                      "v": [-10.0, -20.0, 99.0, 0.0, -4.0, 99.0]})
    assert C.range_means(t, "v", [0, 1]).to_dict() == {"a": -15.0, "b": -2.0}


def test_halves_are_disjoint_and_stability_names_both_verdicts():
    t = pd.DataFrame({"sample_id": [f"q{i:02d}" for i in range(24)], "v": [-20.0] * 12 + [0.0] * 12})
    (a,), (b,) = C.split_halves(t)
    assert not set(a.sample_id) & set(b.sample_id) and len(a) == len(b) == 12
    assert C.stability(lambda x: C.mean_estimate("v", x["v"], -5.0).holds, t) == "halves: inconclusive / inconclusive"
    low = t.assign(v=-20.0)
    assert C.stability(lambda x: C.mean_estimate("v", x["v"], -5.0).holds, low) == "halves: holds / holds"
    small = t.iloc[:16]  # 8 per half: below the minimum
    assert C.stability(lambda x: C.mean_estimate("v", x["v"] - 20, -5.0).holds, small) == \
        "halves: inconclusive / inconclusive"
