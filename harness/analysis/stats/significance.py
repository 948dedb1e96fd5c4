"""Is a candidate's metric different from a baseline's, given repeats on both sides?

Two tests, chosen by what is known about the noise:

* **Permutation test** (:func:`scipy.stats.permutation_test`) of the difference of means, when each side has
  repeats (seeds or timing repetitions). It assumes nothing about the shape of the noise, but it needs enough
  repeats: with ``n`` runs a side the smallest attainable two-sided p-value is ``2 / C(2n, n)``, so at
  ``alpha = 0.05`` at least 4 runs a side are needed (3 a side can never reach significance).
* **Paired test**, when both runs measured the same seeds (:func:`compare_paired`): the per-seed differences
  cancel the seed's own effect. An exact sign-flip permutation test with 6 or more seeds (the smallest
  attainable two-sided p-value is ``2 / 2**n``), a paired t-test below that; the interval of the change is the
  t-interval of the mean difference, relative to the baseline mean.
* **Calibrated z-test**, when ``harness calibrate`` measured this metric's run-to-run relative spread on this
  machine: the spread is known, so even one run a side can be judged, with
  ``z = change / (cv * sqrt(1/n_b + 1/n_c))``.

:func:`repeats_needed` answers "how many runs a side would detect a change of this size" with the usual
normal-approximation power formula, ``n = 2 (z_{1-a/2} + z_{1-b})^2 (sigma / delta)^2``, floored at the
permutation test's minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ChangeTest:
    """The outcome of comparing two samples of one metric.

    Attributes:
        baseline_mean, candidate_mean: sample means.
        relative_change: ``(candidate - baseline) / |baseline|`` (NaN when the baseline mean is 0).
        change_low, change_high: bootstrap interval of the relative change (NaN when a side has one run).
        p_value: two-sided p-value of "the means are equal" (NaN when no test could be run).
        test: ``"permutation"``, ``"paired-permutation"``, ``"paired-t"``, ``"calibrated-z"`` or ``"none"``
            (too few runs and no calibration).
        n_baseline, n_candidate: runs on each side.
    """

    baseline_mean: float
    candidate_mean: float
    relative_change: float
    change_low: float
    change_high: float
    p_value: float
    test: str
    n_baseline: int
    n_candidate: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.change_low) or math.isnan(self.change_high))

    @property
    def interval_excludes_zero(self) -> bool:
        """Whether the interval of the change lies entirely on one side of zero (Datadog's rule)."""
        return self.has_interval and (self.change_low > 0 or self.change_high < 0)

    @property
    def paired(self) -> bool:
        return self.test.startswith("paired")


#: Fewest seeds for which the exact paired sign-flip test can reach p < 0.05 (2 / 2**6 = 0.031).
MIN_PAIRED_PERMUTATION = 6


def compare_paired(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
    seed: int = 0,
) -> ChangeTest:
    """Compare two runs that measured the same seeds: ``baseline[i]`` and ``candidate[i]`` share a seed.

    The test is on the per-seed differences: an exact sign-flip permutation test with
    :data:`MIN_PAIRED_PERMUTATION` or more pairs, a paired t-test with fewer (from 2 pairs). The interval is
    the t-interval of the mean difference divided by ``|baseline mean|``.
    """
    from scipy.stats import permutation_test, t, ttest_rel

    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    keep = np.isfinite(b) & np.isfinite(c)
    b, c = b[keep], c[keep]
    if b.size != c.size or not b.size:
        raise ValueError("a paired comparison needs the same number of finite values on both sides")
    b_mean, c_mean = float(b.mean()), float(c.mean())
    change = _relative_change(b_mean, c_mean)
    n = int(b.size)
    if n < 2:
        return ChangeTest(b_mean, c_mean, change, math.nan, math.nan, math.nan, "none", n, n)
    differences = c - b
    mean_difference = float(differences.mean())
    spread = float(differences.std(ddof=1))
    if spread <= 1e-12 * max(abs(mean_difference), abs(b_mean), 1e-300):
        spread = 0.0  # identical differences up to rounding: a deterministic change
    low = high = math.nan
    if b_mean != 0:
        half = float(t.ppf(0.5 + confidence / 2, n - 1)) * spread / math.sqrt(n)
        low, high = (mean_difference - half) / abs(b_mean), (mean_difference + half) / abs(b_mean)
    if spread == 0:
        p_value = 1.0 if mean_difference == 0 else 0.0
        name = "paired-t"
    elif n >= MIN_PAIRED_PERMUTATION:
        result = permutation_test(
            (differences,),
            lambda d, axis=-1: d.mean(axis=axis),
            permutation_type="samples",
            alternative="two-sided",
            n_resamples=min(9999, 2**n),
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
        p_value, name = float(result.pvalue), "paired-permutation"
    else:
        p_value, name = float(ttest_rel(c, b).pvalue), "paired-t"
    return ChangeTest(b_mean, c_mean, change, low, high, p_value, name, n, n)


def minimum_permutation_repeats(alpha: float) -> int:
    """The fewest runs a side for which a two-sided permutation test can reach ``p <= alpha``."""
    n = 1
    while 2.0 / math.comb(2 * n, n) > alpha:
        n += 1
    return n


def relative_spread(values: Sequence[float]) -> float:
    """Run-to-run coefficient of variation (sample std / |mean|); NaN with fewer than two runs."""
    array = np.asarray(values, dtype=float)
    if array.size < 2 or array.mean() == 0:
        return math.nan
    return float(array.std(ddof=1) / abs(array.mean()))


def repeats_needed(relative_noise: float, relative_effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Runs a side needed to detect a relative change of ``relative_effect`` given ``relative_noise`` (a CV).

    Normal approximation for a two-sample two-sided test; never fewer than the permutation test's minimum.
    Returns a large sentinel (10**6) when the effect is zero.
    """
    from scipy.stats import norm

    floor = minimum_permutation_repeats(alpha)
    if not math.isfinite(relative_noise):
        return floor
    if relative_effect <= 0:
        return 10**6
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return max(floor, math.ceil(2 * (z * relative_noise / relative_effect) ** 2))


def _relative_change(baseline_mean: float, candidate_mean: float) -> float:
    if baseline_mean == 0:
        return 0.0 if candidate_mean == 0 else math.nan
    return (candidate_mean - baseline_mean) / abs(baseline_mean)


def compare_samples(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    calibrated_cv: float | None = None,
    n_resamples: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> ChangeTest:
    """Compare two samples: relative change with a bootstrap interval and a two-sided p-value.

    Uses the calibrated z-test when ``calibrated_cv`` is given (and finite), else a permutation test when both
    sides have two or more runs, else reports ``test="none"``.
    """
    from scipy.stats import bootstrap, norm, permutation_test

    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    b, c = b[np.isfinite(b)], c[np.isfinite(c)]
    if not b.size or not c.size:
        raise ValueError("both sides need at least one finite value")
    b_mean, c_mean = float(b.mean()), float(c.mean())
    change = _relative_change(b_mean, c_mean)
    rng = np.random.default_rng(seed)

    low = high = math.nan
    if b.size >= 2 and c.size >= 2 and b_mean != 0:

        def change_statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
            x_mean = x.mean(axis=axis)
            return (y.mean(axis=axis) - x_mean) / np.abs(x_mean)

        if np.ptp(b) == 0 and np.ptp(c) == 0:
            low = high = change
        else:
            interval = bootstrap(
                (b, c),
                change_statistic,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method="percentile",
                vectorized=True,
                paired=False,
                rng=rng,
            ).confidence_interval
            low, high = float(interval.low), float(interval.high)

    if calibrated_cv is not None and math.isfinite(calibrated_cv) and math.isfinite(change):
        if calibrated_cv == 0:
            p_value = 1.0 if change == 0 else 0.0
        else:
            z = change / (calibrated_cv * math.sqrt(1 / b.size + 1 / c.size))
            p_value = float(2 * norm.sf(abs(z)))
        return ChangeTest(b_mean, c_mean, change, low, high, p_value, "calibrated-z", b.size, c.size)

    if b.size >= 2 and c.size >= 2:
        if np.ptp(np.concatenate([b, c])) == 0:
            p_value = 1.0
        else:
            result = permutation_test(
                (b, c),
                lambda x, y, axis=-1: y.mean(axis=axis) - x.mean(axis=axis),
                permutation_type="independent",
                alternative="two-sided",
                n_resamples=n_resamples,
                vectorized=True,
                rng=rng,
            )
            p_value = float(result.pvalue)
        return ChangeTest(b_mean, c_mean, change, low, high, p_value, "permutation", b.size, c.size)

    return ChangeTest(b_mean, c_mean, change, low, high, math.nan, "none", b.size, c.size)
