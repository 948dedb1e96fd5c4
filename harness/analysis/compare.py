"""Baseline against candidate: per metric and case, the change, its significance and a verdict.

A *case* is one (algorithm, environment) pair; its repeats are the seeds (and, for timing suites, repeated
runs). For each metric and case the verdict is:

* ``regressed`` - the change is in the metric's bad direction, beyond its threshold, and either significant
  or with an interval of the change that excludes zero (Datadog's rule);
* ``improved`` - the same in the good direction;
* ``unchanged`` - within the threshold, or not significant although enough repeats were there to see it;
* ``inconclusive`` - beyond the threshold in the bad direction but not significant, and more repeats are
  needed to tell (the row says how many);
* ``failed`` - the cell ran in the baseline and failed in the candidate;
* ``missing`` / ``new`` - the case exists on one side only (reported, never a regression).

When both runs measured the same seeds of a case, the test is paired (per-seed differences, see
:func:`harness.analysis.stats.compare_paired`); otherwise it compares the two samples.

The threshold is the metric spec's default, overridden by the suite's ``[thresholds]``, overridden by
``--threshold`` on the command line. A calibration file (``harness calibrate``) raises a case's threshold to
the machine's measured noise floor for that metric and case (never lowers it; an explicit command-line
threshold wins) and supplies the noise for a calibrated z-test when either side has fewer runs than a
permutation test needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.calibration import Calibration
from harness.analysis.stability import stability_warnings
from harness.analysis.stats import (
    ChangeTest,
    compare_paired,
    compare_samples,
    minimum_permutation_repeats,
    repeats_needed,
)
from harness.record import SuiteRun, describe_differences, metric_union

#: Fewest runs a side for which an unpaired bootstrap interval of the change is trusted by Datadog's rule.
MIN_RUNS_FOR_INTERVAL_RULE = 3

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_TOO_LITTLE_DATA = 0, 1, 2, 3
_BAD_VERDICTS = ("regressed", "failed")


@dataclass
class CaseVerdict:
    """One row of a comparison: one metric on one (algorithm, environment) case."""

    metric: str
    algorithm: str
    environment: str
    unit: str
    direction: str
    threshold: float
    threshold_source: str
    verdict: str
    test: ChangeTest | None = None
    repeats_needed: int | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)  # stability warnings of either side

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "algorithm": self.algorithm,
            "environment": self.environment,
            "unit": self.unit,
            "direction": self.direction,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "verdict": self.verdict,
            "repeats_needed": self.repeats_needed,
            "note": self.note,
            "warnings": list(self.warnings),
            **(self.test.to_dict() if self.test else {}),
        }


@dataclass
class Comparison:
    """Everything ``harness compare`` reports; :attr:`exit_code` is the command's exit status."""

    baseline: SuiteRun
    candidate: SuiteRun
    rows: list[CaseVerdict]
    alpha: float
    hardware_differences: dict[str, tuple[str, str]] = field(default_factory=dict)
    calibration_source: str | None = None

    @property
    def hardware_summary(self) -> str:
        """What differs between the two runs' machines, as every message names it ("" when nothing does)."""
        return describe_differences(self.hardware_differences)

    @property
    def regressions(self) -> list[CaseVerdict]:
        return [row for row in self.rows if row.verdict in _BAD_VERDICTS]

    @property
    def inconclusive(self) -> list[CaseVerdict]:
        return [row for row in self.rows if row.verdict == "inconclusive"]

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return EXIT_REGRESSION
        if self.inconclusive:
            return EXIT_TOO_LITTLE_DATA
        return EXIT_OK

    @property
    def incomplete(self) -> dict[str, str]:
        """Side ("baseline", "candidate") -> why it is not a complete run (cells that never ran), if it is not."""
        found = {}
        for side, run in (("baseline", self.baseline), ("candidate", self.candidate)):
            if not run.complete or run.status == "incomplete":
                found[side] = run.history_problem
        return found

    @property
    def summary(self) -> str:
        caveat = "; ".join(f"the {side} is {why}" for side, why in self.incomplete.items())
        return f"{self._verdict_summary} ({caveat})" if caveat else self._verdict_summary

    @property
    def _verdict_summary(self) -> str:
        if self.regressions:
            names = sorted({f"{r.metric} ({r.algorithm}/{r.environment})" for r in self.regressions})
            return f"REGRESSION in {len(names)} metric/case(s): " + ", ".join(names[:8])
        if self.inconclusive:
            most = max(row.repeats_needed or 0 for row in self.inconclusive)
            return (
                f"TOO LITTLE DATA: {len(self.inconclusive)} metric/case(s) moved beyond their threshold without "
                f"significance; rerun with at least {most} repeats a side (more seeds, or several runs) "
                "or calibrate this machine with `harness calibrate`"
            )
        return "no regression"

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": _run_facts(self.baseline),
            "candidate": _run_facts(self.candidate),
            "alpha": self.alpha,
            "exit_code": self.exit_code,
            "summary": self.summary,
            "hardware_differences": {k: list(v) for k, v in self.hardware_differences.items()},
            "incomplete": self.incomplete,
            "calibration": self.calibration_source,
            "rows": [row.to_dict() for row in self.rows],
        }


def _run_facts(run: SuiteRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "suite": run.suite,
        "profile": run.profile,
        "git_commit": run.git_commit,
        "fingerprint": run.fingerprint,
        "machine": run.machine,
    }


def _threshold(
    metric: str,
    candidate: SuiteRun,
    baseline: SuiteRun,
    cli_thresholds: Mapping[str, float],
) -> tuple[float, str]:
    if metric in cli_thresholds:
        return cli_thresholds[metric], "command line"
    if "*" in cli_thresholds:
        return cli_thresholds["*"], "command line"
    if metric in candidate.thresholds:
        threshold, source = candidate.thresholds[metric], "suite"
    elif metric in candidate.metric_info or metric in baseline.metric_info:
        info = candidate.metric_info.get(metric) or baseline.metric_info[metric]
        threshold, source = info.threshold, "metric spec"
    else:
        threshold, source = 0.05, "default"
    return threshold, source


def _case_threshold(
    metric: str, case: tuple[str, str], threshold: float, source: str, calibration: Calibration | None
) -> tuple[float, str]:
    """The metric's threshold raised to the case's calibrated noise floor (an explicit one on the command line
    wins): per case, so one noisy case does not blunt the metric in the others."""
    if calibration is None or source == "command line":
        return threshold, source
    calibrated = calibration.threshold(metric, *case)
    if calibrated is not None and calibrated > threshold:
        return calibrated, "calibration"
    return threshold, source


def _pooled_relative_noise(baseline: list[float], candidate: list[float]) -> float:
    b, c = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if b.size < 2 or c.size < 2 or b.mean() == 0:
        return math.nan
    return float(math.sqrt((b.var(ddof=1) + c.var(ddof=1)) / 2) / abs(b.mean()))


def compare_runs(
    baseline: SuiteRun,
    candidate: SuiteRun,
    *,
    cli_thresholds: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    calibration: Calibration | None = None,
    metrics: list[str] | None = None,
    seed: int = 0,
) -> Comparison:
    """Compare every metric of every case the two runs share.

    When the runs come from different machines (:meth:`SuiteRun.machine_differences`, returned as
    :attr:`Comparison.hardware_differences`), rows of metrics that depend on the hardware say so in their note;
    whether such a comparison may happen at all is :func:`check_hardware`'s decision, made before.
    """
    # A label renamed since the baseline (declared with renamed_from) is one case, not two rows.
    baseline = baseline.relabelled(candidate.renames)
    hardware_differences = baseline.machine_differences(candidate)
    cli_thresholds = dict(cli_thresholds or {})
    minimum = minimum_permutation_repeats(alpha)
    rows: list[CaseVerdict] = []
    names = metrics or metric_union([candidate, baseline])
    baseline_status = {cell.case: cell.status for cell in baseline.cells}
    for cell in candidate.cells:
        if cell.status == "failed" and baseline_status.get(cell.case) == "ok":
            rows.append(
                CaseVerdict(
                    "(status)",
                    cell.algorithm,
                    cell.environment,
                    "",
                    "",
                    0.0,
                    "",
                    "failed",
                    note=f"seed {cell.seed} failed: {cell.error}"[:300],
                )
            )
    for metric in names:
        info = candidate.info(metric) if metric in candidate.metric_info else baseline.info(metric)
        metric_threshold, metric_source = _threshold(metric, candidate, baseline, cli_thresholds)
        base_seeds, cand_seeds = baseline.values_by_case_and_seed(metric), candidate.values_by_case_and_seed(metric)
        base_values = {case: list(by_seed.values()) for case, by_seed in base_seeds.items()}
        cand_values = {case: list(by_seed.values()) for case, by_seed in cand_seeds.items()}
        unpaired = baseline.unpaired_cases(metric) | candidate.unpaired_cases(metric)
        hardware_note = ""
        if hardware_differences and info.is_hardware_dependent:
            hardware_note = "different hardware: this metric depends on it, the change may be the machine's"
        for case in sorted(set(base_values) | set(cand_values)):
            algorithm, environment = case
            threshold, source = _case_threshold(metric, case, metric_threshold, metric_source, calibration)
            common: dict[str, Any] = dict(
                metric=metric,
                algorithm=algorithm,
                environment=environment,
                unit=info.unit,
                direction=info.direction,
                threshold=threshold,
                threshold_source=source,
            )
            if case not in cand_values:
                rows.append(CaseVerdict(**common, verdict="missing", note="no ok cell in the candidate"))
                continue
            if case not in base_values:
                rows.append(CaseVerdict(**common, verdict="new", note="not in the baseline"))
                continue
            b, c = base_values[case], cand_values[case]
            seeds = sorted(base_seeds[case])
            same_seeds = len(seeds) >= 2 and seeds == sorted(cand_seeds[case]) and case not in unpaired
            calibrated_cv = None
            if calibration is not None and min(len(b), len(c)) < minimum:
                calibrated_cv = calibration.noise(metric, algorithm, environment)
            if same_seeds and calibrated_cv is None:
                test = compare_paired(
                    [base_seeds[case][s] for s in seeds], [cand_seeds[case][s] for s in seeds], seed=seed
                )
            else:
                test = compare_samples(b, c, calibrated_cv=calibrated_cv, seed=seed)
            noise = calibrated_cv if calibrated_cv is not None else _pooled_relative_noise(b, c)
            row = _verdict(common, test, threshold, alpha, info.higher_is_better, minimum, noise)
            row.warnings = [f"baseline: {w}" for w in stability_warnings(b, info.unit)] + [
                f"candidate: {w}" for w in stability_warnings(c, info.unit)
            ]
            if hardware_note:
                row.note = f"{hardware_note}; {row.note}" if row.note else hardware_note
            rows.append(row)
    return Comparison(
        baseline,
        candidate,
        rows,
        alpha,
        hardware_differences=hardware_differences,
        calibration_source=calibration.source if calibration else None,
    )


def _verdict(
    common: dict[str, Any],
    test: ChangeTest,
    threshold: float,
    alpha: float,
    higher_is_better: bool,
    minimum: int,
    noise: float,
) -> CaseVerdict:
    change = test.relative_change
    if math.isnan(change):
        return CaseVerdict(**common, verdict="unchanged", test=test, note="baseline is 0; relative change undefined")
    signed = change if higher_is_better else -change  # > 0 is better
    beyond = abs(change) > threshold
    significant = not math.isnan(test.p_value) and test.p_value < alpha
    # Datadog's rule: beyond the threshold with an interval of the change that excludes zero. An unpaired
    # bootstrap interval from 2 runs a side is too narrow to trust, so it counts from 3.
    interval_trusted = test.paired or min(test.n_baseline, test.n_candidate) >= MIN_RUNS_FOR_INTERVAL_RULE
    interval_rule = interval_trusted and test.interval_excludes_zero
    if beyond and (significant or interval_rule):
        note = "" if significant else "interval of the change excludes 0 (Datadog's rule); the test is not significant"
        return CaseVerdict(**common, verdict="improved" if signed > 0 else "regressed", test=test, note=note)
    if not beyond or signed > 0:
        note = "" if significant or not beyond else "better but not significant"
        return CaseVerdict(**common, verdict="unchanged", test=test, note=note)
    # Worse beyond the threshold, without significance: is that for lack of repeats?
    have = min(test.n_baseline, test.n_candidate)
    needed = repeats_needed(noise, threshold, alpha)
    if test.test == "none":
        note = f"{have} run(s) a side cannot be tested and this metric is not calibrated"
        return CaseVerdict(**common, verdict="inconclusive", test=test, repeats_needed=max(needed, minimum), note=note)
    if needed > have:
        note = f"p={test.p_value:.3g} with {have} run(s) a side; about {needed} needed to see a {threshold:.1%} change"
        return CaseVerdict(**common, verdict="inconclusive", test=test, repeats_needed=needed, note=note)
    return CaseVerdict(**common, verdict="unchanged", test=test, note="worse but not significant")


def hardware_dependent_metrics(runs: tuple[SuiteRun, SuiteRun], metrics: list[str] | None = None) -> list[str]:
    """The compared metrics whose values depend on the machine (declared, or timing/rate/memory units)."""
    baseline, candidate = runs
    names = metrics or metric_union([candidate, baseline])
    found = []
    for name in names:
        info = candidate.info(name) if name in candidate.metric_info else baseline.info(name)
        if info.is_hardware_dependent:
            found.append(name)
    return found


def check_hardware(
    comparison_inputs: tuple[SuiteRun, SuiteRun], allow: bool, metrics: list[str] | None = None
) -> dict[str, tuple[str, str]]:
    """Differences between the runs' machines.

    Raises BadInput when they differ, ``allow`` is False and a compared metric depends on the hardware
    (timings, throughput, memory: :attr:`MetricDeclaration.is_hardware_dependent`); metrics that do not (scores,
    errors) are comparable across machines and are compared without the flag.
    """
    from harness.errors import BadInput

    baseline, candidate = comparison_inputs
    differences = baseline.machine_differences(candidate)
    if differences and not allow:
        dependent = hardware_dependent_metrics(comparison_inputs, metrics)
        if dependent:
            raise BadInput(
                f"the runs come from different hardware or software ({describe_differences(differences)}), and "
                f"these metrics depend on it: {', '.join(dependent)}. Compare runs from the same machine, pass "
                "--metric to compare only hardware-independent metrics, or pass --allow-different-hardware to "
                "compare anyway (the output is then annotated)."
            )
    return differences
