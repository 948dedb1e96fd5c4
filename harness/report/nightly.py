"""The nightly loop after the suite has run: compare with the baseline, report with trends, promote.

Trend plots cover the newest runs of the suite and profile (oldest first). For each metric and case the
per-run mean forms a series; change points (:func:`harness.analysis.stats.detect_change_points`) mark where its level
moved, so a slow drift that no single night's comparison flags is still visible, with its total size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.calibration import load_calibration
from harness.analysis.compare import EXIT_OK, EXIT_REGRESSION, check_hardware, compare_runs
from harness.analysis.stats import BootstrapConfig, ChangePoints, ChangePointUnavailable, detect_change_points
from harness.paths import path_for
from harness.record import SuiteRun
from harness.report import plots
from harness.report.build import build_report, write_report
from harness.tracking.layout import baseline_filter
from harness.tracking.reader import RunStore

MAX_TREND_METRICS = 12


@dataclass
class NightlyOutcome:
    run_id: str
    baseline_id: str | None
    exit_code: int
    promoted: bool
    report_paths: list[Path]
    messages: list[str] = field(default_factory=list)


def trend_plots(history: list[SuiteRun]) -> list[tuple[str, str, str]]:
    """(metric, plot, summary) per metric over ``history`` (oldest first)."""
    if len(history) < 2:
        return []
    latest = history[-1]
    labels = [f"{run.run_id[:6]} {(run.git_commit or '')[:7]}" for run in history]
    found = []
    for metric in latest.metric_names[:MAX_TREND_METRICS]:
        series: dict[str, list[float]] = {}
        for index, run in enumerate(history):
            for (algorithm, environment), values in run.values_by_case(metric).items():
                series.setdefault(f"{algorithm}/{environment}", [math.nan] * len(history))[index] = float(
                    np.mean(values)
                )
        complete = {case: values for case, values in series.items() if not any(map(math.isnan, values))}
        change_points: dict[str, ChangePoints] = {}
        notes = []
        try:
            for case, values in complete.items():
                change_points[case] = detect_change_points(values)
                shift = change_points[case].total_relative_shift
                if change_points[case].indices:
                    notes.append(f"{case}: level changed at run(s) {change_points[case].indices}, total {shift:+.1%}")
        except ChangePointUnavailable as exc:
            notes.append(str(exc))
        summary = "; ".join(notes) if notes else f"no change point over {len(history)} runs"
        found.append((metric, plots.trend(metric, latest.info(metric).unit, labels, series, change_points), summary))
    return found


def run_nightly(
    run_id: str,
    tracking_uri: str,
    results_dir: Path,
    *,
    promote: bool,
    out: Path | None,
    history: int = 60,
    alpha: float = 0.05,
    allow_different_hardware: bool = False,
) -> NightlyOutcome:
    """Compare the finished run ``run_id`` with its baseline, write the report, promote if clean."""
    store = RunStore(tracking_uri)
    run = store.load(run_id)
    messages = [f"run {run_id} of {run.suite}:{run.profile}"]
    baselines = [r for r in store.suite_runs(run.suite, run.profile, baseline_filter()) if r.info.run_id != run_id]
    comparison = None
    exit_code = EXIT_REGRESSION if any(cell.status == "failed" for cell in run.cells) else EXIT_OK
    if baselines:
        baseline = store.load(baselines[0].info.run_id)
        check_hardware((baseline, run), allow_different_hardware)
        calibration = load_calibration(results_dir, run.suite, run.profile, run.fingerprint, run.name_origin)
        comparison = compare_runs(baseline, run, alpha=alpha, calibration=calibration)
        exit_code = max(exit_code, comparison.exit_code) if exit_code != EXIT_REGRESSION else exit_code
        if comparison.exit_code == EXIT_REGRESSION:
            exit_code = EXIT_REGRESSION
        messages.append(f"against baseline {baseline.run_id}: {comparison.summary}")
        if comparison.hardware_differences:
            messages.append(
                f"different hardware or software ({comparison.hardware_summary}): hardware-dependent rows are annotated"
            )
    else:
        messages.append("no baseline yet for this suite and profile")
    trends = trend_plots([old.relabelled(run.renames) for old in store.history(run.suite, run.profile, limit=history)])
    content = build_report(run, store, BootstrapConfig(), comparison=comparison, trends=trends)
    target = out or path_for(
        results_dir / "reports", "nightly-{suite}-{profile}", run.name_origin, suite=run.suite, profile=run.profile
    )
    paths = write_report(content, target, ["html", "md"])
    messages += [f"report: {path}" for path in paths]
    promoted = False
    if promote:
        if exit_code == EXIT_OK:
            store.mark_baseline(run_id)
            promoted = True
            messages.append(f"promoted {run_id} to baseline")
        else:
            messages.append(f"not promoted: exit code {exit_code}")
    return NightlyOutcome(
        run_id, comparison.baseline.run_id if comparison else None, exit_code, promoted, paths, messages
    )
