"""Honest leaderboards: rank within comparable groups, tie what the data cannot separate, say when n is small.

The rules (written on every report page, see :data:`RANKING_RULES`):

* **Comparable groups.** A metric is ranked per environment (task): a softmax kernel's wall time is not
  ranked against a quantizer's. Only a metric that declares ``comparable_across_tasks`` (normalized scores,
  success rates) also gets a pooled ranking over all environments.
* **One aggregate.** Every table ranks by, and shows, one aggregate: the IQM (rliable), with its stratified
  bootstrap interval.
* **Ties.** Algorithms are sorted by the aggregate in the metric's direction. An algorithm whose interval
  overlaps the leader's interval of its tie group (or, without intervals, whose value equals it) shares that
  rank and is marked tied; ranks are competition ranks (1, 1, 3).
* **Small samples.** With fewer than :data:`MIN_RUNS_FOR_INTERVAL` runs there is no interval and no
  probability of improvement ("n=1"); an interval from fewer than :data:`CAUTION_BELOW_RUNS` runs carries a
  caution.

Everything here is a pure function over ``algorithm -> environment -> run values``; randomness comes in
through a :class:`~harness.analysis.stats.BootstrapConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.stats import BootstrapConfig, Estimate, aggregate_estimate

RANKING_AGGREGATE = "iqm"
MIN_RUNS_FOR_INTERVAL = 2
CAUTION_BELOW_RUNS = 5
#: At most this many algorithms (the best ranked) get a probability-of-improvement matrix.
MAX_MATRIX_ALGORITHMS = 6
POOLED = "all environments (pooled)"

RANKING_RULES = (
    "Ranked per environment by the IQM (interquartile mean over seeds) in the metric's direction; metrics "
    "declared comparable across tasks also get a pooled ranking. An algorithm whose 95% interval overlaps the "
    "interval of the first algorithm of its tie group (or, without intervals, with an equal value) shares that "
    "rank and is marked tied (=). With fewer than 2 runs no interval or probability is shown (n=1); intervals "
    "from fewer than 5 runs are marked with a caution (⚠): the bootstrap understates their width."
)

#: Scores of one metric: algorithm -> environment -> run values (one per seed).
ScoreTable = Mapping[str, Mapping[str, Sequence[float]]]


@dataclass
class RankedRow:
    """One algorithm in one ranking group."""

    rank: int
    algorithm: str
    estimate: Estimate
    tied: bool = False
    best: bool = False

    @property
    def n_runs(self) -> int:
        return self.estimate.n_runs

    @property
    def caution(self) -> str:
        """Why the interval should be read with care ('' when it need not be)."""
        if self.estimate.n_runs < MIN_RUNS_FOR_INTERVAL:
            return f"n={self.estimate.n_runs}: no interval"
        if self.estimate.n_runs < CAUTION_BELOW_RUNS:
            return f"only {self.estimate.n_runs} runs: the interval is optimistic"
        return ""

    @property
    def rank_label(self) -> str:
        return f"={self.rank}" if self.tied else str(self.rank)


@dataclass
class Ranking:
    """The ranking of one metric within one comparable group (an environment, or all of them pooled)."""

    group: str
    higher_is_better: bool
    rows: list[RankedRow]
    #: (better, worse) -> P(a run of better beats a run of worse), for the best ranked algorithms.
    improvement: dict[tuple[str, str], Estimate] = field(default_factory=dict)

    @property
    def matrix_algorithms(self) -> list[str]:
        return [row.algorithm for row in self.rows[:MAX_MATRIX_ALGORITHMS]]

    def probability(self, first: str, second: str) -> Estimate | None:
        """P(a run of ``first`` beats a run of ``second``), or None when it cannot be estimated (n < 2)."""
        if (first, second) in self.improvement:
            return self.improvement[(first, second)]
        if (second, first) in self.improvement:
            e = self.improvement[(second, first)]
            return Estimate(1 - e.value, 1 - e.high, 1 - e.low, e.n_runs, e.n_tasks)
        return None


def _overlaps(a: Estimate, b: Estimate) -> bool:
    if a.value == b.value:
        return True
    if not (a.has_interval and b.has_interval):
        return False
    return a.low <= b.high and b.low <= a.high


def rank_estimates(estimates: Mapping[str, Estimate], higher_is_better: bool) -> list[RankedRow]:
    """Sort by value in the metric's direction, tie overlapping intervals, assign competition ranks."""
    finite = {name: e for name, e in estimates.items() if not math.isnan(e.value)}
    order = sorted(finite, key=lambda name: (-finite[name].value if higher_is_better else finite[name].value, name))
    rows: list[RankedRow] = []
    head: RankedRow | None = None
    for position, name in enumerate(order, start=1):
        estimate = finite[name]
        if head is not None and _overlaps(head.estimate, estimate):
            row = RankedRow(head.rank, name, estimate, tied=True)
            head.tied = True
        else:
            row = RankedRow(position, name, estimate)
            head = row
        rows.append(row)
    for row in rows:
        row.best = row.rank == 1
    return rows


def _single_run(values: Sequence[float]) -> Estimate:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    value = finite[0] if finite else math.nan
    return Estimate(value, math.nan, math.nan, len(finite), 1 if finite else 0)


def rank_group(
    scores: Mapping[str, Sequence[Sequence[float]]],
    higher_is_better: bool,
    config: BootstrapConfig,
    group: str,
    *,
    with_matrix: bool = True,
) -> Ranking:
    """Rank algorithms given each one's runs per task (``algorithm -> [runs of task 1, runs of task 2, ...]``)."""
    estimates = {}
    for algorithm, tasks in scores.items():
        n = sum(len(task) for task in tasks)
        if n < MIN_RUNS_FOR_INTERVAL:
            estimates[algorithm] = _single_run([v for task in tasks for v in task])
        else:
            estimates[algorithm] = aggregate_estimate(tasks, RANKING_AGGREGATE, config)
    ranking = Ranking(group, higher_is_better, rank_estimates(estimates, higher_is_better))
    if with_matrix:
        names = [n for n in ranking.matrix_algorithms if estimates[n].n_runs >= MIN_RUNS_FOR_INTERVAL]
        ranking.improvement = improvement_matrix({n: scores[n] for n in names}, higher_is_better, config)
    return ranking


def improvement_matrix(
    scores: Mapping[str, Sequence[Sequence[float]]], higher_is_better: bool, config: BootstrapConfig
) -> dict[tuple[str, str], Estimate]:
    """rliable's probability of improvement for every pair (i before j in ``scores``), with intervals.

    Each point value is :func:`~harness.analysis.stats.probability_of_improvement`'s (the normalized
    Mann-Whitney U per task, averaged over the tasks both ran). The intervals come from one stratified
    bootstrap shared by all pairs: every algorithm's runs are resampled once per task and replicate, and every
    pair is evaluated on the same replicates (a joint bootstrap, so the matrix is consistent and costs one
    resampling per algorithm instead of one per pair).
    """
    import numpy as np

    names = list(scores)
    if len(names) < 2:
        return {}
    sign = 1.0 if higher_is_better else -1.0
    rng = config.rng()
    tasks = {name: [sign * np.asarray(task, dtype=float) for task in scores[name]] for name in names}
    # Every replicate value is one of the task's observed values: each task's values are coded by their rank
    # among all algorithms' values of that task, and the bootstrap resamples the codes (the same draws as
    # resampling the values), so a pair's U statistic is a histogram count, linear in the runs.
    codes, levels = _task_codes(tasks)
    replicates = {
        name: [
            task[rng.integers(0, task.size, (config.n_resamples, task.size))] if task.size >= 2 else task[None, :]
            for task in per_task
        ]
        for name, per_task in codes.items()
    }
    alpha = (1 - config.confidence) / 2
    pairs = [(first, second) for i, first in enumerate(names) for second in names[i + 1 :]]
    shared = {
        (first, second): [k for k in range(min(len(tasks[first]), len(tasks[second])))
                          if tasks[first][k].size and tasks[second][k].size]
        for first, second in pairs
    }  # fmt: skip
    points: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    boots: dict[tuple[str, str], list[Any]] = {pair: [] for pair in pairs}
    # Task by task, each algorithm's histogram of codes is made once and scores every algorithm ranked above it.
    for k in range(len(levels)):
        for second in names:
            firsts = [first for first, other in pairs if other == second and k in shared[(first, second)]]
            if not firsts:
                continue
            point_table = _below_and_half_equal(codes[second][k][None, :], levels[k])
            boot_table = _below_and_half_equal(replicates[second][k], levels[k])
            for first in firsts:
                points[(first, second)].append(float(_score(point_table, codes[first][k][None, :])[0]))
                boots[(first, second)].append(_score(boot_table, replicates[first][k]))
    found = {}
    for pair in pairs:
        if not shared[pair]:
            continue
        first, second = pair
        boot = np.broadcast_to(np.mean(np.broadcast_arrays(*boots[pair]), axis=0), (config.n_resamples,))
        n_runs = sum(tasks[first][k].size + tasks[second][k].size for k in shared[pair])
        found[pair] = Estimate(
            float(np.mean(points[pair])), float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha)),
            n_runs, len(shared[pair]),
        )  # fmt: skip
    return found


def _task_codes(tasks: Mapping[str, Sequence[Any]]) -> tuple[dict[str, list[Any]], list[int]]:
    """Each task's values as integer codes (dense ranks among every algorithm's values of that task: equal
    values share a code), and the number of distinct values per task."""
    import numpy as np

    codes: dict[str, list[Any]] = {name: [] for name in tasks}
    levels = []
    for k in range(max(len(per_task) for per_task in tasks.values())):
        present = [name for name in tasks if k < len(tasks[name])]
        pooled = np.concatenate([np.asarray(tasks[name][k], dtype=float) for name in present])
        distinct, inverse = np.unique(pooled, return_inverse=True)
        levels.append(max(1, int(distinct.size)))
        start = 0
        for name in present:
            size = np.asarray(tasks[name][k]).size
            codes[name].append(inverse.ravel()[start : start + size])
            start += size
    return codes, levels


def _below_and_half_equal(y: Any, levels: int) -> Any:
    """Per row of coded values ``y`` (rows x n_y), for every code: how many y are below it plus half of those
    equal to it (a histogram's cumulative sum)."""
    import numpy as np

    y = np.atleast_2d(y)
    rows = y.shape[0]
    offsets = np.arange(rows)[:, None] * levels
    counts = np.bincount((y + offsets).ravel(), minlength=rows * levels).reshape(rows, levels)
    return (np.cumsum(counts, axis=1) - 0.5 * counts) / y.shape[-1]


def _score(table: Any, x: Any) -> Any:
    """P(X > Y) + 0.5 P(X == Y) per row: the mean over x of ``table`` (:func:`_below_and_half_equal` of y) at
    x's codes; rows of one side broadcast against the other's (a task with one run is not resampled)."""
    import numpy as np

    x = np.atleast_2d(x)
    rows = max(table.shape[0], x.shape[0])
    table = np.broadcast_to(table, (rows, table.shape[1]))
    x = np.broadcast_to(x, (rows, x.shape[1]))
    return np.take_along_axis(table, x, axis=1).mean(axis=1)


def _coded_improvement(x: Any, y: Any, levels: int) -> Any:
    """P(X > Y) + 0.5 P(X == Y) over all run pairs, for coded values (:func:`_task_codes`), batched along the
    leading axis: per row, a histogram of y's codes gives for every code how many y are below it and how many
    equal it, so every x is scored in one lookup (the Mann-Whitney U, normalized; ties count one half). Replaces
    comparing all pairs, which took most of a report's time at 100 seeds x 26 tasks x 2000 replicates."""
    import numpy as np

    result = _score(_below_and_half_equal(y, levels), x)
    return float(result[0]) if np.ndim(x) == 1 and np.ndim(y) == 1 else result


def _improvement(x: Any, y: Any) -> Any:
    """P(X > Y) + 0.5 P(X == Y) over all run pairs of two samples of values (1-D, or batched along the leading
    axis)."""
    import numpy as np

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    codes, levels = _task_codes({"x": [x.ravel()], "y": [y.ravel()]})
    return _coded_improvement(codes["x"][0].reshape(x.shape), codes["y"][0].reshape(y.shape), levels[0])


def rank_metric(
    table: ScoreTable,
    higher_is_better: bool,
    config: BootstrapConfig,
    *,
    comparable_across_tasks: bool = False,
    environment_order: Sequence[str] | None = None,
) -> list[Ranking]:
    """Rankings of one metric: one per environment, plus a pooled one when the metric is comparable across tasks.

    The pooled ranking treats environments as rliable's tasks (stratified bootstrap); it only includes
    algorithms that ran on every environment, so no algorithm wins by skipping the hard tasks. Environments
    come in ``environment_order`` (the suite's), those it does not list after them alphabetically.
    """
    environments = ordered_environments({env for per_env in table.values() for env in per_env}, environment_order)
    rankings = []
    if comparable_across_tasks and len(environments) > 1:
        complete = {a: per_env for a, per_env in table.items() if all(env in per_env for env in environments)}
        if complete:
            pooled = {a: [list(per_env[env]) for env in environments] for a, per_env in complete.items()}
            rankings.append(rank_group(pooled, higher_is_better, config, POOLED))
    for env in environments:
        group = {a: [list(per_env[env])] for a, per_env in table.items() if env in per_env}
        rankings.append(rank_group(group, higher_is_better, config, env))
    return rankings


def ordered_environments(environments: set[str] | Sequence[str], order: Sequence[str] | None = None) -> list[str]:
    """``environments`` in ``order`` (the suite's), any it does not list after them, alphabetically."""
    position = {name: index for index, name in enumerate(order or [])}
    return sorted(environments, key=lambda name: (position.get(name, len(position)), name))


def near_zero(base: float, other: float, scale: float | None = None, relative_floor: float = 1e-2) -> bool:
    """Whether a relative change from ``base`` to ``other`` would mean nothing.

    True when ``base`` is 0, when the two have opposite signs (-2.6e-5 against 0 is not "+100%"), or when
    ``|base|`` is below ``relative_floor`` times ``scale`` (the metric's typical magnitude, e.g. the largest
    value in the table; default: the larger magnitude of the pair).
    """
    if base == 0 or base * other < 0 or (other == 0 and base != 0):
        return True
    reference = scale if scale is not None and scale > 0 else max(abs(base), abs(other))
    return abs(base) < relative_floor * reference


def describe_change(
    base: float, other: float, higher_is_better: bool, unit: str = "", scale: float | None = None
) -> dict[str, object]:
    """The change from ``base`` to ``other``, labelled by direction, absolute where the base is near zero.

    Returns ``{"absolute", "relative" (None near zero), "direction" ("better"/"worse"/"same"), "text"}``.
    """
    absolute = other - base
    if absolute == 0 or math.isclose(base, other, rel_tol=1e-12, abs_tol=0.0):
        # An exact tie (or one within float rounding of the aggregate) is a tie, never "-0.0% worse".
        return {"absolute": 0.0, "relative": 0.0, "direction": "same", "text": "tied"}
    relative = None if near_zero(base, other, scale) else absolute / abs(base)
    direction = "better" if (absolute > 0) == higher_is_better else "worse"
    if relative is not None and abs(relative) < 0.0005:
        # Below what one decimal of a percentage shows: more digits, so it never reads "+0.0%".
        text = f"{relative * 100:+.2g}%"
    elif relative is None:
        shown = f"{abs(absolute):.4g}" + (f" {unit}" if unit and unit != "1" else "")
        text = f"{'+' if absolute >= 0 else '−'}{shown} (absolute; base ≈ 0)"
    else:
        text = f"{relative:+.1%}"
    text += f" {direction}"
    return {"absolute": absolute, "relative": relative, "direction": direction, "text": text}
