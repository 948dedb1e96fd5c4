"""Alerts: what one night's comparison means for the regressions already known.

A nightly comparison against the baseline lists every (metric, case) that regressed. Without memory, each
night after a slowdown repeats it, and a second regression is mixed into the first. :func:`review_alerts`
gives each regression an identity, (suite, profile, machine, metric, algorithm, environment), and sorts the
night's rows against the alerts still open for that suite, profile and machine:

* **opened**: regressed, and no alert of that identity is open: a new alert (the night fails);
* **still open**: regressed, and already open since an earlier night (reported, does not fail the night);
* **fixed**: open, and tonight the case is compared and not regressed: the level returned;
* **unresolved**: open, and tonight says nothing about it (the case was missing or inconclusive).

An alert is also closed when a run with the new level is promoted (``harness promote``: state ``accepted``,
with the reason); that happens in the store, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from harness.analysis.compare import CaseVerdict, Comparison
from harness.record import Alert, SuiteRun

#: Verdicts that say the case is at the baseline's level (or better) tonight.
_LEVEL_RETURNED = ("unchanged", "improved")


@dataclass
class AlertReview:
    """One night's regressions sorted against the open alerts (see the module docstring)."""

    opened: list[Alert] = field(default_factory=list)
    still_open: list[Alert] = field(default_factory=list)
    fixed: list[Alert] = field(default_factory=list)
    unresolved: list[Alert] = field(default_factory=list)

    @property
    def open_after(self) -> list[Alert]:
        """Every alert open once this night is recorded."""
        return [*self.opened, *self.still_open, *self.unresolved]

    def summary(self) -> str:
        parts = []
        if self.opened:
            parts.append(f"{len(self.opened)} new alert(s)")
        if self.still_open or self.unresolved:
            parts.append(f"{len(self.still_open) + len(self.unresolved)} still open")
        if self.fixed:
            parts.append(f"{len(self.fixed)} fixed")
        return ", ".join(parts) or "no alert"


def alert_for(row: CaseVerdict, comparison: Comparison) -> Alert:
    """A new (open) alert for a regressed row of ``comparison``."""
    run, baseline = comparison.candidate, comparison.baseline
    test = row.test
    return Alert(
        suite=run.suite,
        profile=run.profile,
        fingerprint=run.fingerprint,
        metric=row.metric,
        algorithm=row.algorithm,
        environment=row.environment,
        relative_change=float("nan") if test is None else test.relative_change,
        low=float("nan") if test is None else test.change_low,
        high=float("nan") if test is None else test.change_high,
        opened_run_id=run.run_id,
        opened_commit=run.git_commit,
        opened_at_ms=run.start_time_ms,
        baseline_run_id=baseline.run_id,
        baseline_commit=baseline.git_commit,
        unit=row.unit,
    )


def review_alerts(comparison: Comparison, open_alerts: Iterable[Alert]) -> AlertReview:
    """Sort ``comparison``'s rows against ``open_alerts`` of the same suite, profile and machine."""
    run = comparison.candidate
    rows = {(row.metric, row.algorithm, row.environment): row for row in comparison.rows}
    review = AlertReview()
    open_by_identity = {(a.metric, a.algorithm, a.environment): a for a in open_alerts if a.is_open}
    for key, row in rows.items():
        if row.verdict == "regressed" and key not in open_by_identity:
            review.opened.append(alert_for(row, comparison))
    for key, alert in open_by_identity.items():
        tonight = rows.get(key)
        if tonight is None or tonight.verdict not in (*_LEVEL_RETURNED, "regressed"):
            review.unresolved.append(alert)
        elif tonight.verdict == "regressed":
            review.still_open.append(alert)
        else:
            change = tonight.test.relative_change if tonight.test is not None else float("nan")
            reason = f"level returned: {change:+.1%} against baseline {comparison.baseline.run_id[:8]}"
            review.fixed.append(closed(alert, "fixed", run, reason))
    return review


def closed(alert: Alert, state: str, run: SuiteRun, reason: str) -> Alert:
    """``alert`` closed by ``run``: ``fixed`` (its level returned there) or ``accepted`` (it was promoted)."""
    return replace(
        alert,
        state=state,
        closed_run_id=run.run_id,
        closed_commit=run.git_commit,
        closed_at_ms=run.start_time_ms,
        reason=reason,
    )


def accepted(alert: Alert, run: SuiteRun, reason: str) -> Alert:
    """``alert`` closed because ``run``, with its level, was promoted to baseline."""
    return closed(alert, "accepted", run, reason or "accepted (no reason given)")
