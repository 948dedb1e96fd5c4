"""The nightly loop: a baseline per machine, alerts that stay open until fixed or accepted, trends of real nights.

``harness nightly SUITE`` runs the suite and hands the finished run to :func:`run_nightly`:

* **the baseline** is the newest promotion (``harness promote``, or ``--promote`` on a clean night) of the
  suite and profile *on this machine* (its hardware fingerprint). It is found before any cell runs
  (:func:`find_baseline`): a machine without one starts its own history instead of spending a night on a
  comparison it would refuse;
* **alerts**: each regression against the baseline opens an alert (metric, case, size with its interval, the
  commit and night it appeared); later nights report it as open, not as new, so the exit status is 1 only on
  the night a regression appears (``--fail-on-open`` keeps failing while any is open). An alert closes when
  the level returns (``fixed``) or a run with the new level is promoted (``accepted``, with the reason);
* **history**: trends and change points cover complete nights of this machine only: a killed run (cells that
  never ran), a calibration repeat or imported results are no night (:attr:`SuiteRun.history_problem`).
  Captions name nights and commits, and each change point its size with an interval.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.analysis.alerts import AlertReview, accepted, review_alerts
from harness.analysis.bisect import bisect_command
from harness.analysis.calibration import load_calibration
from harness.analysis.compare import EXIT_OK, EXIT_REGRESSION, EXIT_TOO_LITTLE_DATA, check_hardware, compare_runs
from harness.analysis.stats import BootstrapConfig, ChangePoints, ChangePointUnavailable, detect_change_points
from harness.errors import BadInput
from harness.paths import path_for
from harness.record import Alert, SuiteRun
from harness.report import plots
from harness.report.build import build_report, write_report
from harness.tracking.reader import RunStore

MAX_TREND_METRICS = 12
#: Where each night's report is archived under the nightly report folder: ``nights/<run id>/``.
NIGHTS_FOLDER = "nights"


@dataclass
class NightlyOutcome:
    run_id: str
    baseline_id: str | None
    exit_code: int
    promoted: bool
    report_paths: list[Path]
    messages: list[str] = field(default_factory=list)
    review: AlertReview | None = None


@dataclass
class BaselineChoice:
    """The run tonight is compared with, chosen before anything runs."""

    run_id: str | None
    message: str


def find_baseline(
    tracking_uri: str, suite: str, profile: str, fingerprint: str, *, allow_different_hardware: bool = False
) -> BaselineChoice:
    """This machine's baseline of ``suite``/``profile``; with ``allow_different_hardware`` and none here, the
    newest baseline of another machine (its hardware-dependent rows are then annotated)."""
    try:
        store = RunStore(tracking_uri)
        store.experiment_id(suite)
    except BadInput:
        return BaselineChoice(None, "no baseline yet: the first night of this suite in this store")
    own = store.baseline_run_id(suite, profile, fingerprint)
    if own is not None:
        return BaselineChoice(own, f"baseline {own} (this machine, {fingerprint})")
    others = {fp: cpu for fp, cpu in store.baseline_machines(suite, profile).items() if fp != fingerprint}
    if not others:
        return BaselineChoice(None, f"no baseline yet for {suite}:{profile} on this machine ({fingerprint})")
    named = ", ".join(f"{fp} ({cpu or 'unknown CPU'})" for fp, cpu in sorted(others.items()))
    if allow_different_hardware:
        other = store.baseline_run_id(suite, profile)
        return BaselineChoice(other, f"no baseline on this machine ({fingerprint}); comparing with {other} from "
                                     f"another machine as --allow-different-hardware asks")  # fmt: skip
    return BaselineChoice(
        None,
        f"no baseline for this machine ({fingerprint}); other machines have theirs ({named}). This machine "
        "starts its own history: promote one of its runs (--promote, or harness promote RUN)",
    )


def _night(run: SuiteRun) -> str:
    """How captions name a night: its date and the commit under test."""
    commit = (run.git_commit or "no commit")[:8] + ("+dirty" if run.git_dirty else "")
    return f"{run.night} ({commit})"


def trend_plots(history: list[SuiteRun]) -> list[tuple[str, str, str]]:
    """(metric, plot, caption) per metric over ``history`` (oldest first): each case's per-night mean, with
    change points named by night and commit, each with its size and interval."""
    if len(history) < 2:
        return []
    latest = history[-1]
    labels = [_night(run) for run in history]
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
                points = change_points[case] = detect_change_points(values)
                for change in points.changes:
                    notes.append(
                        f"{case}: level changed from night {_night(history[change.index])} by "
                        f"{change.relative:+.1%} [{change.low:+.1%}, {change.high:+.1%}]"
                    )
        except ChangePointUnavailable as exc:
            notes.append(str(exc))
        first, last = _night(history[0]), _night(history[-1])
        summary = "; ".join(notes) if notes else f"no change point over {len(history)} nights ({first} to {last})"
        found.append((metric, plots.trend(metric, latest.info(metric).unit, labels, series, change_points), summary))
    return found


def _alert_rows(review: AlertReview | None, history: dict[str, SuiteRun]) -> list[dict[str, str]]:
    if review is None:
        return []

    def since(alert: Alert) -> str:
        commit = (alert.opened_commit or "no commit")[:8]
        opened = history.get(alert.opened_run_id)
        return f"{opened.night if opened else alert.opened_run_id[:8]} ({commit})"

    rows = []
    for state, alerts in (("new", review.opened), ("open", review.still_open + review.unresolved),
                          ("fixed", review.fixed)):  # fmt: skip
        for alert in alerts:
            rows.append(
                {
                    "state": state,
                    "metric": alert.metric,
                    "algorithm": alert.algorithm,
                    "environment": alert.environment,
                    "size": alert.size_text,
                    "since": since(alert),
                    "note": alert.reason if state == "fixed" else _open_note(alert),
                }
            )
    return rows


def _previous_night(nights: list[SuiteRun], run: SuiteRun) -> SuiteRun | None:
    """The newest of ``nights`` before ``run`` (the last known good commit of a regression ``run`` shows)."""
    earlier = [night for night in nights if night.run_id != run.run_id]
    return earlier[-1] if earlier else None


def _open_note(alert: Alert) -> str:
    command = bisect_command(alert)
    return f"against baseline {alert.baseline_run_id[:8]}" + (f"; find its commit: {command}" if command else "")


def _alert_line(state: str, alert: Alert) -> str:
    commit = (alert.opened_commit or "no commit")[:12]
    return (
        f"{state}: {alert.metric} {alert.algorithm}/{alert.environment} {alert.size_text} "
        f"(appeared in run {alert.opened_run_id[:8]}, commit {commit})"
    )


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
    baseline: BaselineChoice | None = None,
    fail_on_open: bool = False,
) -> NightlyOutcome:
    """Compare the finished run ``run_id`` with its machine's baseline, update the alerts, write the report
    (attached to the run in MLflow too), and promote a clean night when asked."""
    store = RunStore(tracking_uri)
    run = store.load(run_id)
    messages = [f"run {run_id} of {run.suite}:{run.profile}, commit {run.commit_text}"]
    if baseline is None:
        baseline = find_baseline(
            tracking_uri, run.suite, run.profile, run.fingerprint, allow_different_hardware=allow_different_hardware
        )
    failed = [cell for cell in run.cells if cell.status == "failed"]
    exit_code = EXIT_REGRESSION if failed else EXIT_OK
    if failed:
        messages.append(f"{len(failed)} cell(s) failed")
    problem = run.history_problem
    if problem:
        messages.append(f"this run is {problem}: not compared, not a night of the history")
        exit_code = EXIT_REGRESSION
    # This machine's nights, read once: the trends, and the night before this one for new alerts (at least two,
    # whatever --history says, so that night is known).
    nights = [
        old.relabelled(run.renames) for old in store.history(run.suite, run.profile, max(history, 2), run.fingerprint)
    ]
    comparison = None
    review: AlertReview | None = None
    baseline_id = baseline.run_id if baseline.run_id != run_id else None
    if baseline_id is not None and not problem:
        base = store.load(baseline_id)
        check_hardware((base, run), allow_different_hardware)
        calibration = load_calibration(results_dir, run.suite, run.profile, run.fingerprint, run.name_origin)
        comparison = compare_runs(base, run, alpha=alpha, calibration=calibration)
        review = review_alerts(comparison, store.alerts(run.suite, run.profile, run.fingerprint, state="open"))
        previous = _previous_night(nights, run)
        for alert in review.opened:
            alert.previous_commit = previous.git_commit if previous is not None else None
            store.open_alert(alert, run.experiment_id)
        for alert in review.fixed:
            store.close_alert(alert)
        messages.append(f"against baseline {base.run_id} (commit {base.commit_text}): {review.summary()}")
        for alert in review.opened:
            command = bisect_command(alert)
            messages.append(
                _alert_line("NEW REGRESSION", alert) + (f"\n  find its commit: {command}" if command else "")
            )
        messages += [_alert_line("still open", alert) for alert in review.still_open + review.unresolved]
        messages += [_alert_line("fixed", alert) + f": {alert.reason}" for alert in review.fixed]
        if review.opened or (fail_on_open and review.open_after):
            exit_code = EXIT_REGRESSION
        elif exit_code == EXIT_OK and comparison.inconclusive:
            exit_code = EXIT_TOO_LITTLE_DATA
            messages.append(comparison.summary)
        if comparison.hardware_differences:
            messages.append(
                f"different hardware or software ({comparison.hardware_summary}): hardware-dependent rows are annotated"
            )
    elif not problem:
        messages.append(baseline.message)
    trends = trend_plots(nights[-history:])
    alert_rows = _alert_rows(review, {night.run_id: night for night in nights})
    content = build_report(run, store, BootstrapConfig(), comparison=comparison, trends=trends, alerts=alert_rows)
    target = out or path_for(
        results_dir / "reports", "nightly-{suite}-{profile}", run.name_origin, suite=run.suite, profile=run.profile
    )
    paths = write_report(content, target, ["html", "md"])
    # Every night's report is kept (the folder's top level is the newest): `harness publish` links them.
    archived = target / NIGHTS_FOLDER / run_id
    archived.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy2(path, archived / path.name)
    store.attach_report(run_id, paths)
    messages += [f"report: {path}" for path in paths]
    promoted = False
    if promote:
        if exit_code == EXIT_OK and not problem and not (review and review.open_after):
            reason = f"nightly: no regression against {baseline_id}" if baseline_id else "nightly: first night"
            store.promote(run, reason)
            promoted = True
            messages.append(f"promoted {run_id} to baseline of this machine ({run.fingerprint})")
        else:
            why = "alerts are open" if review and review.open_after else f"exit code {exit_code}"
            messages.append(f"not promoted: {why} (accept a new level with: harness promote {run_id} --reason TEXT)")
    return NightlyOutcome(run_id, baseline_id, exit_code, promoted, paths, messages, review)


def promote_run(store: RunStore, run: SuiteRun, reason: str) -> tuple[list[Alert], list[Alert]]:
    """Make ``run`` its machine's baseline; returns (alerts closed as accepted, alerts left open).

    Promoting accepts the level ``run`` measured, so it closes the open alerts that opened at or before ``run``
    (their change is part of that level). An alert that opened on a later night stays open: the new baseline
    predates its change, and the next night still finds it against that baseline."""
    store.promote(run, reason)
    closed, still_open = [], []
    for alert in store.alerts(run.suite, run.profile, run.fingerprint, state="open"):
        if alert.opened_run_id != run.run_id and alert.opened_at_ms > run.start_time_ms:
            still_open.append(alert)
            continue
        done = accepted(alert, run, reason)
        store.close_alert(done)
        closed.append(done)
    return closed, still_open
