"""Aggregate scores over runs and tasks, with stratified bootstrap confidence intervals.

The conventions follow rliable (Agarwal et al., 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"): scores are grouped by task (here: by environment), a run is one seed of one
algorithm on one task, the interquartile mean (IQM) is the mean of the middle 50% of all runs pooled over
tasks, and confidence intervals come from a *stratified* bootstrap that resamples runs within each task
independently, so every bootstrap replicate keeps every task.

rliable's own ``library`` module cannot be imported next to the pandas this project uses (its ``arch``
dependency breaks), so the resampling is done by :func:`scipy.stats.bootstrap`: given one sample per task and
``paired=False`` it resamples each sample independently, which is exactly the stratified bootstrap.

Every function takes its randomness from a :class:`BootstrapConfig` so that a report can be regenerated
bit for bit; the config is written into every report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Scores of one algorithm: one 1-D array of run scores (one per seed or repeat) per task.
ScoresByTask = Sequence[np.ndarray] | Sequence[Sequence[float]]


@dataclass(frozen=True)
class BootstrapConfig:
    """How confidence intervals are computed; recorded in every report so it can be reproduced.

    Attributes:
        n_resamples: bootstrap replicates (rliable uses 2000 for its figures; more gives steadier bounds).
        confidence: the confidence level of every interval.
        seed: the seed of the numpy ``Generator`` that draws the replicates.
        method: ``"percentile"`` (rliable's default; robust when runs are few) or ``"BCa"``.
    """

    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    method: str = "percentile"

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval (``low``/``high`` are NaN when it cannot be had)."""

    value: float
    low: float
    high: float
    n_runs: int
    n_tasks: int

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def interquartile_mean(scores: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean of the middle 50% of ``scores`` (25% trimmed from each end), as in rliable's ``aggregate_iqm``.

    The same cut as :func:`scipy.stats.trim_mean` (``int(0.25 n)`` values from each end), in plain numpy: the
    bootstrap calls it hundreds of times per report, and scipy's wrapper costs more than the arithmetic.
    """
    array = np.asarray(scores, dtype=float)
    if axis is None:
        array, axis = array.ravel(), 0
    n = array.shape[axis]
    cut = int(0.25 * n)
    ordered = np.sort(array, axis=axis)
    middle = np.take(ordered, np.arange(cut, n - cut), axis=axis)
    result = _without_overflow(np.mean, middle, axis)
    return float(result) if np.ndim(result) == 0 else result


def _without_overflow(reduce: Callable[..., Any], scores: np.ndarray, axis: int | None) -> Any:
    """``reduce(scores, axis)`` (a mean or a median), finite where the scores are: 1.7e308 twice has the mean
    1.7e308, though their sum overflows. Where it overflowed, the scores are scaled by a power of two, which is
    exact, so every other value stays bit for bit what ``reduce`` gives."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = reduce(scores, axis=axis)
    overflowed = np.isinf(result)
    if not np.any(overflowed):
        return result
    array = np.asarray(scores, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        largest = np.max(np.abs(array), axis=axis, keepdims=True)
        scale = np.where(np.isfinite(largest) & (largest > 0), np.ldexp(1.0, np.frexp(largest)[1] - 1), 1.0)
        scaled = reduce(array / scale, axis=axis) * (scale if axis is None else np.squeeze(scale, axis=axis))
    scaled = scaled.reshape(np.shape(result)) if np.ndim(scaled) else scaled
    return np.where(overflowed, scaled, result) if np.ndim(result) else type(result)(scaled)


def _mean(scores: np.ndarray, axis: int | None = None) -> Any:
    return _without_overflow(np.mean, scores, axis)


def _median(scores: np.ndarray, axis: int | None = None) -> Any:
    return _without_overflow(np.median, scores, axis)


#: The aggregates every leaderboard shows, by name; each reduces pooled runs along ``axis``.
AGGREGATES: dict[str, Callable[..., Any]] = {
    "iqm": interquartile_mean,
    "mean": _mean,
    "median": _median,
}


def percentile_bootstrap(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., Any],
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``statistic`` under independent resampling of each sample (unpaired).

    The same draws, in the same order, as :func:`scipy.stats.bootstrap` with ``vectorized=True``,
    ``paired=False``, ``method="percentile"`` and no batching, so the bounds are identical; without scipy's
    per-call validation, which dominated a 1,000-cell report (hundreds of small bootstraps).
    """
    resampled = [sample[rng.integers(0, sample.shape[-1], (n_resamples, sample.shape[-1]))] for sample in samples]
    distribution = np.asarray(statistic(*resampled, axis=-1), dtype=float)
    alpha = (1 - confidence) / 2
    low = np.quantile(distribution, alpha, axis=-1)
    high = np.quantile(distribution, 1 - alpha, axis=-1)
    return low, high


def _as_tasks(scores_by_task: ScoresByTask) -> list[np.ndarray]:
    tasks = [np.asarray(task, dtype=float).ravel() for task in scores_by_task]
    tasks = [task[np.isfinite(task)] for task in tasks]
    return [task for task in tasks if task.size]


def stratified_bootstrap(
    scores_by_task: ScoresByTask,
    statistic: Callable[[np.ndarray], Any],
    config: BootstrapConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence bounds of ``statistic(pooled runs)`` under a stratified bootstrap over tasks.

    ``statistic`` receives the runs of all tasks concatenated along the last axis (with leading batch axes
    during resampling) and returns a scalar or a 1-D array per batch element. Tasks with a single run cannot
    be resampled and are kept fixed in every replicate. Returns ``(low, high)``; both NaN when no task has two
    or more runs.
    """
    tasks = _as_tasks(scores_by_task)
    point = np.asarray(statistic(np.concatenate(tasks)) if tasks else np.nan, dtype=float)
    resampled = [task for task in tasks if task.size >= 2]
    fixed = [task for task in tasks if task.size < 2]
    if not resampled:
        nan = np.full(point.shape, np.nan)
        return nan, nan
    fixed_runs = np.concatenate(fixed) if fixed else np.empty(0)

    def pooled_statistic(*samples: np.ndarray, axis: int = -1) -> Any:
        batch_shape = samples[0].shape[:-1]
        constant = np.broadcast_to(fixed_runs, (*batch_shape, fixed_runs.size))
        return statistic(np.concatenate([*samples, constant], axis=-1))

    if config.method == "percentile":
        low, high = percentile_bootstrap(resampled, pooled_statistic, config.n_resamples, config.confidence,
                                         config.rng())  # fmt: skip
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    else:
        from scipy.stats import bootstrap

        with warnings.catch_warnings():
            # Identical runs (a deterministic metric) give a zero-width interval; scipy warns, that is right.
            warnings.filterwarnings("ignore", message=".*degenerate.*")
            result = bootstrap(
                tuple(resampled),
                pooled_statistic,
                n_resamples=config.n_resamples,
                confidence_level=config.confidence,
                method=config.method,
                vectorized=True,
                paired=False,
                rng=config.rng(),
            )
        low = np.asarray(result.confidence_interval.low, dtype=float)
        high = np.asarray(result.confidence_interval.high, dtype=float)
    # A zero-variance bootstrap distribution can come back NaN from BCa; the interval is then the point.
    low = np.where(np.isnan(low), point, low)
    high = np.where(np.isnan(high), point, high)
    return low, high


def aggregate_estimate(scores_by_task: ScoresByTask, aggregate: str, config: BootstrapConfig) -> Estimate:
    """``aggregate`` (``iqm``, ``mean`` or ``median``) over all runs of all tasks, with a stratified CI."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {sorted(AGGREGATES)}")
    reduce = AGGREGATES[aggregate]
    tasks = _as_tasks(scores_by_task)
    n_runs = int(sum(task.size for task in tasks))
    if not n_runs:
        return Estimate(math.nan, math.nan, math.nan, 0, 0)
    value = float(reduce(np.concatenate(tasks)))
    low, high = stratified_bootstrap(tasks, lambda pooled: reduce(pooled, axis=-1), config)
    return Estimate(value, float(low), float(high), n_runs, len(tasks))


def aggregate_all(scores_by_task: ScoresByTask, config: BootstrapConfig) -> dict[str, Estimate]:
    """Every aggregate of :data:`AGGREGATES` with its interval."""
    return {name: aggregate_estimate(scores_by_task, name, config) for name in AGGREGATES}


@dataclass(frozen=True)
class PerformanceProfile:
    """Fraction of runs scoring better than each threshold (rliable's run-score distribution).

    For a lower-is-better metric "better than" means below the threshold. ``fraction`` averages the
    per-task fractions, so a task with more runs does not weigh more; ``low``/``high`` are stratified
    bootstrap bounds (NaN where no task has two runs).
    """

    thresholds: np.ndarray
    fraction: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _profile_fractions(tasks: Sequence[np.ndarray], thresholds: np.ndarray, higher_is_better: bool) -> Any:
    per_task = []
    for task in tasks:
        runs = task[..., None]
        better = runs > thresholds if higher_is_better else runs < thresholds
        per_task.append(better.mean(axis=-2))
    return np.mean(per_task, axis=0)


def performance_profile(
    scores_by_task: ScoresByTask,
    thresholds: Sequence[float] | np.ndarray,
    config: BootstrapConfig,
    higher_is_better: bool = True,
) -> PerformanceProfile:
    """The performance profile of one algorithm at ``thresholds``, with bootstrap bands."""
    tasks = _as_tasks(scores_by_task)
    taus = np.asarray(thresholds, dtype=float)
    fraction = _profile_fractions(tasks, taus, higher_is_better)
    resampled_index = [i for i, task in enumerate(tasks) if task.size >= 2]
    if not resampled_index:
        nan = np.full(taus.shape, np.nan)
        return PerformanceProfile(taus, fraction, nan, nan)

    def statistic(*samples: np.ndarray, axis: int = -1) -> Any:
        batch_shape = samples[0].shape[:-1]
        full = [np.broadcast_to(task, (*batch_shape, task.size)) for task in tasks]
        for index, sample in zip(resampled_index, samples, strict=True):
            full[index] = sample
        return np.moveaxis(_profile_fractions(full, taus, higher_is_better), -1, 0)

    low, high = percentile_bootstrap(
        [tasks[i] for i in resampled_index], statistic, config.n_resamples, config.confidence, config.rng()
    )
    return PerformanceProfile(taus, fraction, np.asarray(low), np.asarray(high))


def _pairwise_improvement(x: np.ndarray, y: np.ndarray) -> Any:
    """P(X > Y) + 0.5 P(X == Y) over all run pairs, batched along leading axes (the Mann-Whitney U / mn)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    ties = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def probability_of_improvement(
    x_by_task: Mapping[str, np.ndarray] | Mapping[str, Sequence[float]],
    y_by_task: Mapping[str, np.ndarray] | Mapping[str, Sequence[float]],
    config: BootstrapConfig,
    higher_is_better: bool = True,
) -> Estimate:
    """Probability that a run of X beats a run of Y on a task, averaged over the tasks both have.

    This is rliable's ``probability_of_improvement`` (the normalized Mann-Whitney U statistic per task,
    averaged over tasks); for a lower-is-better metric "beats" means "is lower". The interval comes from a
    stratified bootstrap that resamples X's and Y's runs within each task independently.
    """
    tasks = sorted(set(x_by_task) & set(y_by_task))
    xs = [np.asarray(x_by_task[t], dtype=float).ravel() for t in tasks]
    ys = [np.asarray(y_by_task[t], dtype=float).ravel() for t in tasks]
    keep = [i for i in range(len(tasks)) if xs[i].size and ys[i].size]
    xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    if not xs:
        return Estimate(math.nan, math.nan, math.nan, 0, 0)
    sign = 1.0 if higher_is_better else -1.0
    xs = [sign * x for x in xs]
    ys = [sign * y for y in ys]
    n_tasks = len(xs)
    value = float(np.mean([_pairwise_improvement(x, y) for x, y in zip(xs, ys, strict=True)]))
    samples = [*xs, *ys]
    movable = [i for i, sample in enumerate(samples) if sample.size >= 2]
    n_runs = int(sum(x.size for x in xs) + sum(y.size for y in ys))
    if not movable:
        return Estimate(value, math.nan, math.nan, n_runs, n_tasks)

    def statistic(*resampled: np.ndarray, axis: int = -1) -> Any:
        batch_shape = resampled[0].shape[:-1]
        current = [np.broadcast_to(s, (*batch_shape, s.size)) for s in samples]
        for index, sample in zip(movable, resampled, strict=True):
            current[index] = sample
        per_task = [_pairwise_improvement(current[i], current[n_tasks + i]) for i in range(n_tasks)]
        return np.mean(per_task, axis=0)

    low, high = percentile_bootstrap(
        [samples[i] for i in movable], statistic, config.n_resamples, config.confidence, config.rng()
    )
    return Estimate(value, float(low), float(high), n_runs, n_tasks)
