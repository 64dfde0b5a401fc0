"""Paired bootstrap interval of the mean difference over subjects, against hand-computed cases."""

import numpy as np
import pytest

from medcyclegan.evaluation.statistics import paired_bootstrap_ci, paired_difference


def test_three_subjects_match_the_enumerated_bootstrap_distribution():
    # differences 0, 3, 6: a resample (i, j, k) of subject indices in {0, 1, 2} has mean i + j + k;
    # over the 27 equally likely resamples that sum is 0..6 with counts 1, 3, 6, 7, 6, 3, 1, so
    # P(<= 0) = 1/27 = 3.7% > 2.5% and P(<= 5) = 26/27 = 96.3% < 97.5%: the 95% interval is [0, 6];
    # P(<= 0) = 3.7% < 10% < P(<= 1) = 4/27 = 14.8% and P(<= 4) = 23/27 = 85.2% < 90% < 96.3%:
    # the 80% interval is [1, 5]
    assert paired_bootstrap_ci([0.0, 3.0, 6.0], 10000, seed=0) == (0.0, 6.0)
    assert paired_bootstrap_ci([0.0, 3.0, 6.0], 10000, seed=0, level=0.80) == (1.0, 5.0)


def test_two_subjects():
    # resample means -1 (1/4), 0 (1/2), 1 (1/4): the 95% interval is [-1, 1]; the 40% one (30th and
    # 70th percentiles, both between P(<= -1) = 25% and P(<= 0) = 75%) is [0, 0]
    assert paired_bootstrap_ci([-1.0, 1.0], 10000, seed=1) == (-1.0, 1.0)
    assert paired_bootstrap_ci([-1.0, 1.0], 10000, seed=1, level=0.40) == (0.0, 0.0)


def test_seeded_and_reproducible():
    d = np.random.default_rng(5).normal(-20, 30, 25)
    a = paired_bootstrap_ci(d, 2000, seed=7)
    assert a == paired_bootstrap_ci(d, 2000, seed=7)
    assert a != paired_bootstrap_ci(d, 2000, seed=8)
    assert a[0] < d.mean() < a[1]


def test_all_differences_equal_give_that_single_value():
    assert paired_bootstrap_ci([-12.5] * 4, 500, seed=0) == (-12.5, -12.5)


def test_fewer_than_two_subjects_give_no_interval_with_a_reason():
    assert paired_bootstrap_ci([3.0], 100, seed=0) is None
    assert paired_bootstrap_ci([], 100, seed=0) is None
    one = paired_difference([100.0, np.nan], [150.0, 120.0], n_resamples=100, seed=0)
    assert one["mean"] == -50.0 and one["ci95"] is None and one["n_subjects"] == 1
    assert "at least 2" in one["reason"]
    none = paired_difference([], [], n_resamples=100, seed=0)
    assert none["mean"] is None and none["n_subjects"] == 0


def test_paired_difference_drops_subjects_without_both_scores():
    r = paired_difference([100.0, 120.0, 140.0], [90.0, np.nan, 150.0], n_resamples=10000, seed=0)
    assert r["n_subjects"] == 2 and r["mean"] == pytest.approx(0.0)
    assert r["ci95"] == [-10.0, 10.0]


def test_bad_arguments():
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], 100, seed=0, level=1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], 0, seed=0)
