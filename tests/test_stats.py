"""Paired statistics of the experiment, against numbers computed by hand."""

import math

import pytest

from yfpo_core.stats import hierarchical_bootstrap, paired_t_interval, t975


def test_paired_t_interval_by_hand():
    # differences 0.1, 0.3, 0.2, 0.4, 0.0: mean 0.2, sd sqrt(0.025) = 0.158114, t(0.975, 4) = 2.776
    interval = paired_t_interval([0.1, 0.3, 0.2, 0.4, 0.0])
    half = 2.776 * math.sqrt(0.025) / math.sqrt(5)  # 0.196296
    assert interval.mean == pytest.approx(0.2)
    assert interval.low == pytest.approx(0.2 - half) and interval.high == pytest.approx(0.2 + half)
    assert half == pytest.approx(0.19630, abs=1e-5)
    assert interval.excludes_zero is True
    assert paired_t_interval([0.1, -0.1]).excludes_zero is False  # mean 0


def test_t_quantiles():
    assert t975(1) == 12.706 and t975(4) == 2.776 and t975(30) == 2.042 and t975(200) == 1.96
    with pytest.raises(ValueError):
        t975(0)


def test_bootstrap_of_constant_differences_is_a_point():
    interval = hierarchical_bootstrap({0: [0.5, 0.5, 0.5], 1: [0.5, 0.5]}, n_boot=200)
    assert (interval.mean, interval.low, interval.high) == (0.5, 0.5, 0.5)


def test_bootstrap_mean_is_the_mean_of_seed_means_and_the_interval_covers_it():
    # seed 0 mean 1.0, seed 1 mean 3.0 -> estimate 2.0 (seeds weigh equally whatever their size)
    data = {0: [0.0, 2.0], 1: [3.0, 3.0, 3.0, 3.0]}
    interval = hierarchical_bootstrap(data, n_boot=2000, seed=1)
    assert interval.mean == pytest.approx(2.0)
    assert 0.0 <= interval.low <= 2.0 <= interval.high <= 3.0
    # every resample is a mean of values in [0, 3]; with 2 seeds, both drawn as seed 0 and both as 0.0 is
    # possible (probability 1/4 * (1/4)^... ), so the low end reaches down towards 0.5 but never below 0
    assert interval.n == 6


def test_bootstrap_is_reproducible_and_detects_a_clear_shift():
    data = {s: [0.1 + 0.01 * ((s * 7 + i) % 5) for i in range(50)] for s in range(5)}
    a, b = hierarchical_bootstrap(data, seed=3), hierarchical_bootstrap(data, seed=3)
    assert a == b and a.excludes_zero
    noisy = {s: [(-1) ** i * 0.5 for i in range(50)] for s in range(5)}  # mean exactly 0
    assert not hierarchical_bootstrap(noisy).excludes_zero
