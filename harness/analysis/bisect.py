"""Which commit moved a metric? The decision rule and the search of ``harness bisect``, over plain numbers.

Measurements are the selected cells' metric values of one commit, grouped by case (algorithm, environment
labels): ``{case: [value, ...]}``, one value per seed and evaluation. Nothing here runs code or reads MLflow:
the caller hands in a ``measure`` function (:class:`Search`), so the rule is tested on hand-made numbers.

**The noise** has two parts, per case (:class:`Noise`), both pooled over every commit measured so far:

* the spread of seeds within one run, ``s_w``: each run's values around their own mean, degrees of freedom
  ``sum(n_run - 1)``;
* the drift of whole runs, ``s_b``: how far the means of two runs of the *same* commit differ beyond what
  their seeds' spread explains (a one-way random-effects ANOVA: ``s_b^2 = max(0, MS_between - s_w^2 / n)``,
  from the commits measured in two runs or more). A timing shifts with the machine's state from one run to
  the next; seeds of one run do not see that, so a confidence from ``s_w`` alone would be overstated.

A commit's mean over ``k`` runs of ``n`` values in all then has variance ``s_w^2 / n + s_b^2 / k``. Until some
commit is measured twice (a repeat, two stored nights of one commit, or ``measure_drift``: the good and bad
commits in two runs each before the search), ``s_b`` is unknown and taken as 0: the result says so
(``drift_measured: false``). A metric with no spread (a deterministic score) has no noise and every decision is certain.

**Did anything change?** Per case, the good and bad means differ when a Student t-test with that noise
gives ``p < alpha`` *and* the relative change is at least the metric's threshold (the same bar an alert
crosses). No case changed: :class:`Undecided` "no change between good and bad", never a commit.

**Where does a commit stand?** Its position ``t = (mean - good) / (bad - good)`` per changed case (0: the good
level, 1: the bad level), with standard error ``sqrt(v + (1-t)^2 v_good + t^2 v_bad) / |bad - good|`` (``v``
the variance of each commit's mean), combined over cases by inverse variance. The commit is *bad* when
``t > 1/2`` (closer to the bad level), *good* otherwise; the decision's confidence is ``Phi(|t - 1/2| / se)``.
Below :data:`CONFIDENT` the commit is measured again (up to ``repeats`` evaluations) before the decision is
taken, and the confidence is reported either way.
A commit whose level is at least :data:`INTERMEDIATE` away from both and significantly different from both is
*intermediate*: the change is not one clean step.

**Is it one step?** At the end, ``t(first bad) - t(last good)`` is the share of the whole change that the first
bad commit makes. Below :data:`CLEAN_STEP`, or with an intermediate commit seen, the result says
``clean_step: false`` with the positions of every evaluated commit (e.g. two steps of half the change each).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Case = tuple[str, str]
Values = dict[Case, list[float]]

#: A decision below this confidence is measured again before it is taken (while repeats are left).
CONFIDENT = 0.95
#: Share of the whole change the first bad commit must make for a clean step.
CLEAN_STEP = 0.75
#: How far (as a share of the whole change) from both levels a commit must be to count as in between.
INTERMEDIATE = 0.2


class Undecided(Exception):
    """The search cannot name a commit (no change, commits that cannot be evaluated, ...): exit 3."""


class CannotEvaluate(Exception):
    """This commit cannot be measured (the plugin does not import, the install failed, every selected cell
    failed): the search skips it, as ``git bisect skip`` does."""


@dataclass
class CommitLevel:
    """Everything measured at one commit of the range."""

    index: int  # -1: the good commit; 0..n-1: the commits after it, the last one the bad commit
    values: Values = field(default_factory=dict)
    #: The same values, one list per run (an evaluation, or one stored run): what the drift is measured from.
    runs: dict[Case, list[list[float]]] = field(default_factory=dict)
    evaluations: int = 0  # runs made by this bisect
    run_ids: list[str] = field(default_factory=list)  # runs made by this bisect
    reused_run_ids: list[str] = field(default_factory=list)  # stored runs of this exact commit
    problem: str = ""  # why it cannot be evaluated ("" when it can)

    def add(self, values: Values) -> None:
        """Add one run's values."""
        for case, numbers in values.items():
            if numbers:
                self.values.setdefault(case, []).extend(numbers)
                self.runs.setdefault(case, []).append(list(numbers))

    def mean(self, case: Case) -> float:
        numbers = self.values.get(case, [])
        return sum(numbers) / len(numbers) if numbers else math.nan


@dataclass(frozen=True)
class CaseChange:
    """The change of one case from one commit to another, with the pooled noise."""

    case: Case
    before: float
    after: float
    relative_change: float
    low: float
    high: float
    p_value: float
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.case[0],
            "environment": self.case[1],
            "before": _number(self.before),
            "after": _number(self.after),
            "relative_change": _number(self.relative_change),
            "low": _number(self.low),
            "high": _number(self.high),
            "p_value": _number(self.p_value),
        }


@dataclass(frozen=True)
class Position:
    """Where a commit's level stands between the good (0) and the bad (1) level."""

    t: float
    se: float
    intermediate: bool

    @property
    def side(self) -> str:
        return "bad" if self.t > 0.5 else "good"

    @property
    def confidence(self) -> float:
        distance = abs(self.t - 0.5)
        if self.se <= 0:
            return 1.0
        return 0.5 * (1 + math.erf(distance / self.se / math.sqrt(2)))


@dataclass(frozen=True)
class Decision:
    index: int
    side: str  # "good", "bad" or "skipped"
    position: Position | None
    evaluations: int
    reason: str = ""


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Noise:
    """A case's noise (see the module docstring): the spread of seeds within a run and the drift of runs."""

    within: float  # s_w; nan when no run has two values
    freedom: int  # degrees of freedom of s_w
    between: float = 0.0  # s_b; 0 when not measured or not above what the seeds explain
    between_freedom: int = 0  # sum(runs - 1) over commits measured in two runs or more; 0: drift not measured

    @property
    def known(self) -> bool:
        return self.freedom > 0 or self.between_freedom > 0

    @property
    def test_freedom(self) -> int:
        """Degrees of freedom of a t-test on this noise: the seeds' (or, with one value per run, the runs')."""
        return self.freedom or self.between_freedom

    def variance_of_mean(self, level: CommitLevel, case: Case) -> float:
        runs = [run for run in level.runs.get(case, []) if run]
        values = sum(len(run) for run in runs)
        if not values:
            return math.nan
        within = 0.0 if math.isnan(self.within) else self.within**2
        return within / values + self.between**2 / len(runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "within_run_sd": _number(self.within),
            "between_runs_sd": _number(self.between),
            "drift_measured": self.between_freedom > 0,
        }


def pooled_noise(levels: Sequence[CommitLevel], case: Case) -> Noise:
    """The noise of a case over the measured commits (see the module docstring)."""
    squares, freedom = 0.0, 0
    run_squares, run_freedom = 0.0, 0
    sizes: list[int] = []
    for level in levels:
        runs = [run for run in level.runs.get(case, []) if run]
        means = [sum(run) / len(run) for run in runs]
        for run, mean in zip(runs, means, strict=True):
            squares += sum((x - mean) ** 2 for x in run)
            freedom += len(run) - 1
            sizes.append(len(run))
        if len(runs) >= 2:
            grand = sum(means) / len(means)
            run_squares += sum((mean - grand) ** 2 for mean in means)
            run_freedom += len(runs) - 1
    within = math.sqrt(squares / freedom) if freedom else math.nan
    between = 0.0
    if run_freedom:
        # A run's mean varies by s_b^2 + s_w^2 / n; n the runs' size (harmonic mean, for unequal seed counts).
        size = len(sizes) / sum(1 / n for n in sizes)
        explained = within**2 / size if freedom else 0.0
        between = math.sqrt(max(0.0, run_squares / run_freedom - explained))
    return Noise(within, freedom, between, run_freedom)


def case_change(
    before: CommitLevel, after: CommitLevel, case: Case, noise: Noise, threshold: float, alpha: float
) -> CaseChange:
    """The relative change of ``case`` from ``before`` to ``after``: a t-interval and p-value on the pooled noise."""
    from scipy.stats import t as student

    a, b = before.values.get(case, []), after.values.get(case, [])
    mean_a, mean_b = before.mean(case), after.mean(case)
    freedom = noise.test_freedom
    relative = (mean_b - mean_a) / abs(mean_a) if mean_a else math.nan
    if not a or not b or not freedom or math.isnan(relative):
        return CaseChange(case, mean_a, mean_b, relative, math.nan, math.nan, math.nan, False)
    se = math.sqrt(noise.variance_of_mean(before, case) + noise.variance_of_mean(after, case))
    if se == 0:
        p_value = 1.0 if mean_a == mean_b else 0.0
        low = high = relative
    else:
        statistic = (mean_b - mean_a) / se
        p_value = float(2 * student.sf(abs(statistic), freedom))
        half = float(student.ppf(1 - alpha / 2, freedom)) * se / abs(mean_a)
        low, high = relative - half, relative + half
    changed = p_value < alpha and abs(relative) >= threshold
    return CaseChange(case, mean_a, mean_b, relative, low, high, p_value, changed)


def position(level: CommitLevel, good: CommitLevel, bad: CommitLevel, cases: Sequence[Case],
             noise: dict[Case, Noise]) -> Position:  # fmt: skip
    """Where ``level`` stands between ``good`` (0) and ``bad`` (1), over the changed cases."""
    weighted = weights = 0.0
    parts: list[tuple[float, float]] = []
    for case in cases:
        delta = bad.mean(case) - good.mean(case)
        if not level.values.get(case) or not delta:
            continue
        t = (level.mean(case) - good.mean(case)) / delta
        v, v_good, v_bad = (noise[case].variance_of_mean(x, case) for x in (level, good, bad))
        variance = v + (1 - t) ** 2 * v_good + t**2 * v_bad
        se = 0.0 if math.isnan(variance) else math.sqrt(variance) / abs(delta)
        parts.append((t, se))
    if not parts:
        return Position(math.nan, math.nan, False)
    if any(se == 0 for _, se in parts):
        t = sum(t for t, _ in parts) / len(parts)
        se = 0.0
    else:
        for t, se in parts:
            weighted += t / se**2
            weights += 1 / se**2
        t, se = weighted / weights, 1 / math.sqrt(weights)
    away = min(t, 1 - t) >= INTERMEDIATE and t - 1.96 * se > 0 and t + 1.96 * se < 1
    return Position(t, se, away)


@dataclass
class Outcome:
    """What the search found: the first bad commit's index and how it was reached."""

    first_bad: int
    last_good: int
    levels: dict[int, CommitLevel]
    decisions: list[Decision]
    changes: list[CaseChange]  # good -> bad, per changed case
    step: list[CaseChange]  # last good -> first bad, per changed case
    positions: dict[int, Position]
    clean_step: bool
    step_fraction: float
    confidence: float
    noise: dict[Case, Noise] = field(default_factory=dict)

    @property
    def drift_measured(self) -> bool:
        """Whether the run-to-run drift is part of the confidence (some commit was measured in two runs)."""
        return all(noise.between_freedom > 0 for noise in self.noise.values())

    @property
    def evaluations(self) -> int:
        return sum(level.evaluations for level in self.levels.values())


class Search:
    """Binary search for the first commit at the bad level, measuring as little as the noise allows.

    ``count`` commits follow the good one, the last being the bad one; ``measure(index)`` runs one more
    evaluation of the commit at ``index`` (-1: the good commit) and returns its values, or raises
    :class:`CannotEvaluate` when that commit cannot be measured. ``stored(index)`` gives the values of runs
    already stored for that commit (reused, no evaluation), one :data:`Values` per run, with their run ids.
    """

    def __init__(
        self,
        count: int,
        measure: Callable[[int], tuple[Values, str]],
        stored: Callable[[int], tuple[Sequence[Values], list[str]]],
        *,
        threshold: float | Callable[[], float],
        repeats: int = 3,
        alpha: float = 0.05,
        measure_drift: bool = False,
        notify: Callable[[str], None] = lambda message: None,
        name: Callable[[int], str] = str,
    ) -> None:
        self.count = count
        self._measure = measure
        self._stored = stored
        self._threshold = threshold
        self.repeats = max(1, repeats)
        self.alpha = alpha
        self.measure_drift = measure_drift
        self.notify = notify
        self.name = name
        self.levels: dict[int, CommitLevel] = {}
        self.decisions: list[Decision] = []
        self.cases: list[Case] = []

    # -- measuring ------------------------------------------------------------------------------------
    def level(self, index: int, *, at_least: int = 1) -> CommitLevel:
        """The commit's level with at least ``at_least`` evaluations (stored runs count as one)."""
        level = self.levels.get(index)
        if level is None:
            level = self.levels[index] = CommitLevel(index)
            runs, run_ids = self._stored(index)
            if runs:
                for stored in runs:
                    level.add(stored)
                level.reused_run_ids = list(run_ids)
                self.notify(f"{self.name(index)}: reusing stored run(s) {', '.join(r[:8] for r in run_ids)}")
        while not level.problem and level.evaluations + bool(level.reused_run_ids) < at_least:
            try:
                values, run_id = self._measure(index)
            except CannotEvaluate as exc:
                level.problem = str(exc)
                self.notify(f"{self.name(index)}: cannot be evaluated: {exc}")
                break
            level.evaluations += 1
            level.run_ids.append(run_id)
            level.add(values)
        return level

    def noise(self) -> dict[Case, Noise]:
        measured = [level for level in self.levels.values() if not level.problem]
        return {case: pooled_noise(measured, case) for case in self.cases}

    # -- the search -----------------------------------------------------------------------------------
    def run(self, cases_of_interest: Sequence[Case] | None = None) -> Outcome:
        good, bad = self._endpoints(cases_of_interest)
        lo, hi = -1, self.count - 1
        skipped: set[int] = set()
        while hi - lo > 1:
            index = self._next(lo, hi, skipped)
            if index is None:
                names = ", ".join(self.name(i) for i in range(lo + 1, hi + 1))
                raise Undecided(
                    f"the first bad commit is one of {names}: the commits between {self.name(lo)} and "
                    f"{self.name(hi)} cannot be evaluated ({self._problems(lo, hi)})"
                )
            decision = self._decide(index, good, bad)
            self.decisions.append(decision)
            if decision.side == "skipped":
                skipped.add(index)
            elif decision.side == "bad":
                hi = index
            else:
                lo = index
        return self._outcome(lo, hi, good, bad)

    def _endpoints(self, cases_of_interest: Sequence[Case] | None) -> tuple[CommitLevel, CommitLevel]:
        good = self.level(-1)
        if good.problem:
            raise Undecided(f"the good commit {self.name(-1)} cannot be evaluated: {good.problem}")
        bad = self.level(self.count - 1)
        if self.measure_drift:  # two runs of a commit show how far whole runs drift (stored runs count)
            for level in (good, bad):
                if not level.problem and min(map(len, level.runs.values()), default=0) < 2:
                    self.level(level.index, at_least=level.evaluations + bool(level.reused_run_ids) + 1)
        if bad.problem:
            raise Undecided(f"the bad commit {self.name(self.count - 1)} cannot be evaluated: {bad.problem}")
        cases = sorted(set(good.values) & set(bad.values))
        if cases_of_interest:
            cases = [case for case in cases if case in set(cases_of_interest)]
        if not cases:
            raise Undecided(
                f"the good and bad commits have no case with values in common (good: {sorted(good.values)}, bad: "
                f"{sorted(bad.values)})"
            )
        self.cases = cases
        # Noise needs two values of a case at some commit: one seed a commit is measured again.
        while any(not noise.known for noise in self.noise().values()):
            more = max(good.evaluations, bad.evaluations) + 1 + bool(good.reused_run_ids or bad.reused_run_ids)
            if more > self.repeats:
                raise Undecided(
                    "one value per commit and no repeats left: the noise of the metric is unknown (run more seeds "
                    "or pass --repeats 2 or more)"
                )
            self.level(-1, at_least=more)
            self.level(self.count - 1, at_least=more)
        changes = self.total_changes()
        if not any(change.changed for change in changes):
            told = "; ".join(
                f"{c.case[0]}/{c.case[1]} {c.before:.4g} -> {c.after:.4g} ({c.relative_change:+.1%}, p={c.p_value:.2g})"
                for c in changes
            )
            raise Undecided(
                f"no change between good and bad beyond the noise and the metric's threshold ({self.threshold:.0%}): "
                f"{told}"
            )
        self.cases = [change.case for change in changes if change.changed]
        return good, bad

    @property
    def threshold(self) -> float:
        """The metric's threshold: given, or asked for once the endpoints are measured (from their runs)."""
        return self._threshold() if callable(self._threshold) else self._threshold

    def total_changes(self) -> list[CaseChange]:
        noise = self.noise()
        good, bad = self.levels[-1], self.levels[self.count - 1]
        return [case_change(good, bad, case, noise[case], self.threshold, self.alpha) for case in self.cases]

    def _next(self, lo: int, hi: int, skipped: set[int]) -> int | None:
        """The middle of (lo, hi), or its nearest neighbour that can be evaluated (git bisect's skip)."""
        middle = (lo + hi) // 2
        for distance in range(hi - lo):
            for index in (middle - distance, middle + distance):
                if lo < index < hi and index not in skipped:
                    return index
        return None

    def _decide(self, index: int, good: CommitLevel, bad: CommitLevel) -> Decision:
        level = self.level(index)
        if level.problem:
            return Decision(index, "skipped", None, level.evaluations, level.problem)
        place = position(level, good, bad, self.cases, self.noise())
        while place.confidence < CONFIDENT and level.evaluations + bool(level.reused_run_ids) < self.repeats:
            self.notify(
                f"{self.name(index)}: level {place.t:.2f} of the change, {place.confidence:.0%} sure: measuring again"
            )
            level = self.level(index, at_least=level.evaluations + bool(level.reused_run_ids) + 1)
            if level.problem:
                return Decision(index, "skipped", None, level.evaluations, level.problem)
            place = position(level, good, bad, self.cases, self.noise())
        self.notify(
            f"{self.name(index)}: {place.side} (level {place.t:.2f} of the change, {place.confidence:.0%} sure"
            + (", between the two levels" if place.intermediate else "")
            + ")"
        )
        return Decision(index, place.side, place, level.evaluations)

    def _problems(self, lo: int, hi: int) -> str:
        found = [f"{self.name(i)}: {self.levels[i].problem}" for i in range(lo + 1, hi) if i in self.levels]
        return "; ".join(found) or "none measured"

    def _outcome(self, lo: int, hi: int, good: CommitLevel, bad: CommitLevel) -> Outcome:
        noise = self.noise()
        positions = {
            index: position(level, good, bad, self.cases, noise)
            for index, level in sorted(self.levels.items())
            if not level.problem
        }
        last_good, first_bad = self.levels[lo], self.levels[hi]
        step = [case_change(last_good, first_bad, case, noise[case], 0.0, self.alpha) for case in self.cases]
        fraction = positions[hi].t - positions[lo].t
        intermediate = any(place.intermediate for place in positions.values())
        confidence = 1.0
        for decision in self.decisions:
            if decision.position is not None:
                confidence *= decision.position.confidence
        return Outcome(
            first_bad=hi,
            last_good=lo,
            levels=dict(sorted(self.levels.items())),
            decisions=self.decisions,
            changes=self.total_changes(),
            step=step,
            positions=positions,
            clean_step=fraction >= CLEAN_STEP and not intermediate,
            step_fraction=fraction,
            confidence=confidence,
            noise={case: noise[case] for case in self.cases},
        )


def bisect_command(alert: Any, good: str | None = None, repo: str | None = None) -> str | None:
    """The exact ``harness bisect`` command that finds the commit an alert (:class:`harness.record.Alert`)
    appeared at: good is ``good``, else the commit of the night before the one that opened it (the narrowest
    range), else the baseline's commit; bad the commit of the night that opened it (None without both).
    ``repo`` adds ``--repo``."""
    good = good or getattr(alert, "previous_commit", None) or alert.baseline_commit
    if not good or not alert.opened_commit or good == alert.opened_commit:
        return None
    parts = ["harness", "bisect", alert.suite, "--profile", alert.profile, *(["--repo", repo] if repo else []),
             "--good", good, "--bad", alert.opened_commit, "--metric", alert.metric,
             "--only", f"algorithm={alert.algorithm},environment={alert.environment}"]  # fmt: skip
    return " ".join(shlex.quote(part) for part in parts)
