"""Paired statistics for comparing training arms: per-seed differences, t-intervals, a two-level bootstrap.

Every arm of an experiment is evaluated on the same held-out problems for each seed, so the comparison
with DPO is paired twice: by seed (same pairs, batch order, held-out problems) and by problem. The
statistic is the mean over seeds and problems of ``arm(s, p) - dpo(s, p)``.

* :func:`paired_t_interval`: the classic interval over per-seed mean differences,
  ``mean +- t(0.975, n-1) * sd / sqrt(n)`` (checkable by hand; treats problems as fixed).
* :func:`hierarchical_bootstrap`: resample seeds, then problems within each drawn seed, and take the 2.5 and
  97.5 percentiles of the resampled means: both sources of variation, no normality assumption.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# t(0.975, df) for df = 1..30; beyond that the normal quantile is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a t-interval needs at least 2 values")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_t_interval(differences: Sequence[float]) -> Interval:
    """Mean of ``differences`` (one per seed) with the 95% t-interval."""
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t975(n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def hierarchical_bootstrap(differences: Mapping[int, Sequence[float]], n_boot: int = 2000,
                           seed: int = 0) -> Interval:
    """Mean paired difference over seeds and problems with a 95% two-level bootstrap interval.

    Args:
        differences: seed -> per-problem differences ``arm - baseline`` (same problems, same order).
        n_boot: Bootstrap resamples.
        seed: RNG seed (the interval is reproducible).
    """
    groups = [list(v) for v in differences.values() if len(v)]
    if not groups:
        raise ValueError("no differences to bootstrap")
    mean = statistics.fmean(statistics.fmean(g) for g in groups)
    rng = random.Random(seed)
    draws = []
    for _ in range(n_boot):
        chosen = [groups[rng.randrange(len(groups))] for _ in groups]
        draws.append(statistics.fmean(statistics.fmean(g[rng.randrange(len(g))] for _ in g) for g in chosen))
    draws.sort()
    low = draws[int(0.025 * (n_boot - 1))]
    high = draws[int(math.ceil(0.975 * (n_boot - 1)))]
    return Interval(mean, low, high, sum(len(g) for g in groups))
