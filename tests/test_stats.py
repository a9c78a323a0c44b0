"""The statistics of the comparison against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftlab.analysis.stats import mean_ci, paired_bootstrap


def test_t_interval_matches_the_hand_computation():
    # mean 0.82, s = 0.02; t(0.975, df=2) = 4.302653; half width = 4.302653 * 0.02 / sqrt(3) = 0.049683
    got = mean_ci([0.80, 0.82, 0.84])
    assert got["mean"] == pytest.approx(0.82) and got["std"] == pytest.approx(0.02) and got["n"] == 3
    assert got["ci_low"] == pytest.approx(0.82 - 0.049683, abs=1e-6)
    assert got["ci_high"] == pytest.approx(0.82 + 0.049683, abs=1e-6)
    # 90%: t(0.95, df=2) = 2.919986
    assert mean_ci([0.80, 0.82, 0.84], level=0.90)["ci_high"] == pytest.approx(0.82 + 2.919986 * 0.02 / math.sqrt(3))


def test_one_value_has_no_interval():
    assert mean_ci([0.9]) == {"mean": 0.9, "std": None, "ci_low": None, "ci_high": None, "n": 1}
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])


def test_identical_predictions_are_no_significant_difference():
    a = np.random.default_rng(0).random((3, 500)) > 0.3
    got = paired_bootstrap(a, a.copy())
    assert got["difference"] == 0 and got["p_value"] == 1.0
    assert got["verdict"] == "no significant difference" and (got["seeds"], got["examples"]) == (3, 500)


def test_a_large_gap_is_significant_in_the_right_direction():
    right, half = np.ones(1000), np.arange(1000) % 2
    assert paired_bootstrap(right, half)["verdict"] == "better"
    got = paired_bootstrap(half, right)
    assert got["verdict"] == "worse" and got["difference"] == pytest.approx(-0.5) and got["p_value"] < 0.001


def test_one_seed_interval_matches_the_normal_approximation():
    # per-example differences: +1 on 60 examples, -1 on 30, 0 elsewhere; n = 1000
    a, b = np.zeros(1000), np.zeros(1000)
    a[:60], b[60:90] = 1, 1
    d = a - b
    se = d.std() / math.sqrt(len(d))  # the plug-in standard error the bootstrap estimates
    got = paired_bootstrap(a, b, resamples=20_000)
    assert got["difference"] == pytest.approx(0.03)
    assert got["ci_low"] == pytest.approx(0.03 - 1.96 * se, abs=0.002)
    assert got["ci_high"] == pytest.approx(0.03 + 1.96 * se, abs=0.002)
    assert got["verdict"] == "better"  # z = 0.03 / 0.0094 = 3.2


def test_seed_to_seed_variation_is_not_mistaken_for_a_difference():
    # A wins 100 examples at seeds 0 and 2 and loses 100 at seed 1: +5, -5, +5 points. Pooled over
    # examples alone this looks significant (z ~ 4.5); resampling the seeds too, P(mean <= 0) is about
    # P(at least two of three draws are seed 1) = 7/27, so p ~ 0.52.
    a, b = np.zeros((3, 2000)), np.zeros((3, 2000))
    a[[0, 2], :100] = 1
    b[1, 100:200] = 1
    got = paired_bootstrap(a, b)
    assert got["difference"] == pytest.approx(0.05 / 3)
    assert got["verdict"] == "no significant difference"
    assert got["p_value"] == pytest.approx(2 * 7 / 27, abs=0.05)


def test_unpaired_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.ones((2, 10)), np.ones((3, 10)))
