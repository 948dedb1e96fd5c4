"""``harness publish``: every benchmark's history as a static site, from what is in MLflow.

asv publishes a static site of each benchmark over commits with a regressions page; conbench and bencher.dev
show histories on a server. This site needs no server and works offline (one shared ``assets/plotly.min.js``):

* ``index.html``: every suite, profile and machine with its nights, last night, open alerts;
* one page per suite, profile and machine: each case x metric as a history over nights in commit order
  (:func:`in_commit_order`: by the commit's date, runs of one commit in run order), with each night's mean
  (6 significant digits) and the half width of its 95% interval (t·sd/√n over seeds, 3 digits), the change points
  (:func:`harness.analysis.stats.detect_change_points`, with their size and interval) and the alerts marked;
  hover shows night, commit, value, interval and seeds, a click opens the night's archived report (or its
  MLflow run, given ``--mlflow-url``); a table of the nights links each to both; filters by algorithm,
  environment and metric;
* ``regressions.html``: every alert with its size and interval, the commit range where it appeared (the
  previous night's commit to the night's), when it was first seen, its state (open, fixed, accepted with
  the reason) and the ``harness bisect`` command that finds the commit;
* ``nights/<run id>/``: each night's report as ``harness nightly`` archived it.

Reading a year of nights stays fast because a page needs only the parent runs: each one's tags (commit,
machine, status) and its ``aggregates.json`` (per-case mean, sd and count), never the cell runs. Nights are
what trends count: complete runs of their own (:attr:`harness.record.SuiteRun.history_problem`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from harness.analysis.bisect import bisect_command
from harness.analysis.stats import ChangePointUnavailable, detect_change_points
from harness.paths import path_for, safe_name
from harness.record import Alert, MetricDeclaration, SuiteRun
from harness.report.build import SORT_SCRIPT
from harness.tracking.layout import decode_metric_declarations
from harness.tracking.reader import RunStore

#: Pages, templates and the site's shared script.
SITE_TEMPLATES = "site"
ASSETS = "assets"
NIGHTS = "nights"


@dataclass
class Night:
    """One complete run in a history, with its per-case values (no cells)."""

    run: SuiteRun
    values: dict[tuple[str, str, str], tuple[float, float, int]]


@dataclass
class History:
    """One suite, profile and machine over its nights (oldest first)."""

    suite: str
    profile: str
    fingerprint: str
    cpu: str
    gpu: str
    nights: list[Night]
    metrics: dict[str, MetricDeclaration]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def page(self) -> str:
        return f"{self.suite}-{self.profile}-{self.fingerprint or 'unknown'}.html"

    @property
    def open_alerts(self) -> list[Alert]:
        return [alert for alert in self.alerts if alert.is_open]

    @property
    def by_start(self) -> list[SuiteRun]:
        """The runs in the order they ran (``nights`` are in commit order): first and last night are these."""
        return sorted((night.run for night in self.nights), key=lambda run: run.start_time_ms)


@dataclass
class PublishedSite:
    out: Path
    pages: list[Path]
    histories: list[History]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "seconds": round(self.seconds, 3),
            "pages": [{"path": str(page), "bytes": page.stat().st_size} for page in self.pages],
            "histories": [
                {
                    "suite": h.suite, "profile": h.profile, "fingerprint": h.fingerprint, "nights": len(h.nights),
                    "open_alerts": len(h.open_alerts), "alerts": len(h.alerts),
                }
                for h in self.histories
            ],
        }  # fmt: skip


def in_commit_order(runs: Sequence[SuiteRun]) -> list[SuiteRun]:
    """Nights in the order of the code they measured: by the commit's date, runs of one commit in run order,
    so a history backfilled for old commits (``harness run --repo`` at each) shows every run where its commit
    belongs. A run without a recorded commit date (made before harness recorded it, or outside git) stands at
    its start time: the latest its commit can be, and where a nightly run's commit is."""

    def moment(run: SuiteRun) -> float:
        return run.git_commit_time if run.git_commit_time is not None else run.start_time_ms / 1000

    return sorted(runs, key=moment)  # stable: ``runs`` come in run order


def collect(store: RunStore, suites: Sequence[str], notify: Callable[[str], None] = lambda m: None) -> list[History]:
    """Every (suite, profile, machine) history of ``suites`` (every suite in the store when empty)."""
    names = list(suites) or store.suite_names()
    histories: list[History] = []
    for suite in names:
        runs = store.summaries(suite)
        alerts = store.alerts(suite)
        groups: dict[tuple[str, str], list[SuiteRun]] = {}
        for run in runs:
            if not run.history_problem:
                groups.setdefault((run.profile, run.fingerprint), []).append(run)
        for (profile, fingerprint), runs_of_machine in sorted(groups.items()):
            group = in_commit_order(runs_of_machine)
            notify(f"{suite}:{profile} on {fingerprint or 'an unknown machine'}: {len(group)} night(s)")
            nights = [Night(run, store.aggregates(run.run_id)) for run in group]
            metrics = decode_metric_declarations(store.suite_info(runs_of_machine[-1].run_id))
            machine = runs_of_machine[-1].machine_facts
            histories.append(
                History(
                    suite, profile, fingerprint, machine.cpu, machine.gpu, nights, metrics,
                    [a for a in alerts if a.profile == profile and a.fingerprint == fingerprint],
                )
            )  # fmt: skip
    return histories


def _interval(mean: float, std: float, n: int) -> tuple[float | None, float | None]:
    """95% t-interval of a night's mean over its seeds (None when it has one seed or no sd)."""
    if n < 2 or not math.isfinite(std):
        return None, None
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def _short(commit: str | None) -> str:
    return (commit or "no commit")[:10]


def _report_link(night: Night, archived: set[str]) -> str:
    return f"{NIGHTS}/{night.run.run_id}/index.html" if night.run.run_id in archived else ""


def _mlflow_link(night: Night, mlflow_url: str | None) -> str:
    if not mlflow_url:
        return ""
    return f"{mlflow_url.rstrip('/')}/#/experiments/{night.run.experiment_id}/runs/{night.run.run_id}"


def _significant(value: float | None, digits: int) -> float | None:
    """``value`` to ``digits`` significant digits (None when not finite): a year of nights stays a small page."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def history_data(history: History, archived: set[str], mlflow_url: str | None) -> dict[str, Any]:
    """What a history page draws, as JSON: the nights once, then one compact series per case and metric."""
    nights = history.nights
    index_of = {night.run.run_id: index for index, night in enumerate(nights)}
    night_rows = [
        {
            "run": night.run.run_id,
            "date": night.run.night,
            "commit": _short(night.run.git_commit),
            "sha": night.run.git_commit or "",
            "dirty": night.run.git_dirty,
            # A click opens the night's archived report, else its MLflow run; the nights table offers both.
            "link": _report_link(night, archived) or _mlflow_link(night, mlflow_url),
            "report": _report_link(night, archived),
            "mlflow": _mlflow_link(night, mlflow_url),
        }
        for night in nights
    ]
    keys = sorted({key for night in nights for key in night.values})
    series = []
    for algorithm, environment, metric in keys:
        values: list[float | None] = []
        halves: list[float | None] = []
        seeds: list[int] = []
        for night in nights:
            mean, std, n = night.values.get((algorithm, environment, metric), (math.nan, math.nan, 0))
            low, high = _interval(mean, std, n)
            values.append(_significant(mean, 6))
            halves.append(None if low is None or high is None else _significant((high - low) / 2, 3))
            seeds.append(n)
        known = [v for v in values if v is not None]
        changes = []
        if len(known) == len(values):
            try:
                found = detect_change_points([float(value) for value in known])
            except ChangePointUnavailable:
                found = None
            for change in found.changes if found else []:
                changed = nights[change.index].run
                changes.append(
                    {
                        "index": change.index,
                        "text": f"level changed from {changed.night} ({_short(changed.git_commit)}) by "
                        f"{change.relative:+.1%} [{change.low:+.1%}, {change.high:+.1%}]",
                    }
                )
        marks = []
        for alert in history.alerts:
            if (alert.metric, alert.algorithm, alert.environment) != (metric, algorithm, environment):
                continue
            if alert.opened_run_id in index_of:
                text = f"alert {alert.state}: {alert.size_text} at {_short(alert.opened_commit)}"
                marks.append({"index": index_of[alert.opened_run_id], "state": alert.state, "text": text})
            if alert.closed_run_id in index_of:
                text = f"alert {alert.state}: {alert.reason}"
                marks.append({"index": index_of[alert.closed_run_id], "state": "closed", "text": text})
        info = history.metrics.get(metric, MetricDeclaration(metric))
        series.append(
            {
                "algorithm": algorithm, "environment": environment, "metric": metric, "unit": info.unit,
                "direction": info.direction, "values": values, "half": halves,
                "seeds": seeds[0] if len(set(seeds)) == 1 else seeds, "changes": changes, "alerts": marks,
            }
        )  # fmt: skip
    return {"nights": night_rows, "series": series}


def regression_rows(histories: Iterable[History], repo_hint: str = "PATH") -> list[dict[str, Any]]:
    """One row per alert, newest first, with the commit range and the bisect command."""
    rows = []
    for history in histories:
        order = {night.run.run_id: index for index, night in enumerate(history.nights)}
        for alert in history.alerts:
            index = order.get(alert.opened_run_id)
            # The nearest earlier night of another commit: the narrowest good end (two runs of one commit are no range).
            earlier = [n.run.git_commit for n in history.nights[:index] if n.run.git_commit] if index else []
            previous = next((c for c in reversed(earlier) if c != alert.opened_commit), None)
            good = previous or alert.previous_commit or alert.baseline_commit
            bad = alert.opened_commit
            command = bisect_command(alert, good=good, repo=repo_hint) or ""
            rows.append(
                {
                    "state": alert.state,
                    "reason": alert.reason,
                    "suite": history.suite,
                    "profile": history.profile,
                    "machine": history.fingerprint,
                    "page": history.page,
                    "metric": alert.metric,
                    "case": f"{alert.algorithm}/{alert.environment}",
                    "size": alert.size_text,
                    "sort_size": alert.relative_change if math.isfinite(alert.relative_change) else 0.0,
                    "range": f"{_short(good)}..{_short(bad)}",
                    "range_full": f"{good or 'unknown'}..{bad or 'unknown'}",
                    "first_seen": time.strftime("%Y-%m-%d %H:%M", time.gmtime(alert.opened_at_ms / 1000)),
                    "sort_seen": alert.opened_at_ms,
                    "closed": "" if alert.closed_at_ms is None
                    else time.strftime("%Y-%m-%d %H:%M", time.gmtime(alert.closed_at_ms / 1000)),
                    "bisect": command,
                }
            )  # fmt: skip
    return sorted(rows, key=lambda row: row["sort_seen"], reverse=True)


TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>`` or comment can be formed."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _archived_reports(results_dir: Path | None, histories: Sequence[History], out: Path) -> set[str]:
    """Copy each night's archived nightly report into the site; the run ids that have one."""
    if results_dir is None:
        return set()
    from harness.report.nightly import NIGHTS_FOLDER

    copied: set[str] = set()
    for history in histories:
        folder = path_for(
            results_dir / "reports", "nightly-{suite}-{profile}", "publish (suite and profile names from MLflow)",
            suite=history.suite, profile=history.profile,
        ) / NIGHTS_FOLDER  # fmt: skip
        for night in history.nights:
            source = folder / night.run.run_id / "index.html"
            if source.is_file():
                target = out / NIGHTS / night.run.run_id
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / "index.html")
                copied.add(night.run.run_id)
    return copied


def publish(
    store: RunStore,
    out: Path,
    suites: Sequence[str] = (),
    *,
    results_dir: Path | None = None,
    mlflow_url: str | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> PublishedSite:
    """Write the site for ``suites`` (every suite when empty) into ``out``."""
    from plotly.offline import get_plotlyjs

    started = time.perf_counter()
    for suite in suites:
        safe_name(suite, "suite", "harness publish SUITE")
    histories = collect(store, suites, notify)
    out.mkdir(parents=True, exist_ok=True)
    (out / ASSETS).mkdir(exist_ok=True)
    script = out / ASSETS / "plotly.min.js"
    if not script.exists():
        script.write_text(get_plotlyjs(), encoding="utf-8")
    # One table sorter for the report page and the site: the report's, then the site's own script.
    site_script = (TEMPLATES / SITE_TEMPLATES / "site.js").read_text(encoding="utf-8")
    (out / ASSETS / "site.js").write_text(SORT_SCRIPT + "\n" + site_script, encoding="utf-8")
    archived = _archived_reports(results_dir, histories, out)
    environment = _environment()
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    pages = []
    for history in histories:
        page = path_for(
            out, "{suite}-{profile}-{machine}.html", "publish (suite, profile and machine names from MLflow)",
            suite=history.suite, profile=history.profile, machine=history.fingerprint or "unknown",
        )  # fmt: skip
        data = history_data(history, archived, mlflow_url)
        html = environment.get_template(f"{SITE_TEMPLATES}/history.html.j2").render(
            h=history,
            data=_json_for_script(data),
            generated=generated,
            series=len(data["series"]),
            nights=data["nights"],
        )
        page.write_text(html, encoding="utf-8")
        pages.append(page)
    rows = regression_rows(histories)
    for name, context in (
        ("index.html", {"histories": histories}),
        ("regressions.html", {"rows": rows}),
    ):
        path = out / name
        path.write_text(
            environment.get_template(f"{SITE_TEMPLATES}/{name}.j2").render(generated=generated, **context),
            encoding="utf-8",
        )
        pages.append(path)
    return PublishedSite(out, pages, histories, time.perf_counter() - started)
