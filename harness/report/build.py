"""From a suite run in MLflow to the content of a report, then to HTML and Markdown files.

:func:`build_report` computes everything (statistics, plots) once into a :class:`ReportContent`; the HTML
template (``templates/report.html.j2``, Jinja2 with autoescaping on, so every run-, suite- and plugin-provided
string is escaped) and the Markdown writer only lay it out.

Roofline plots are drawn for metrics whose unit is ``GB/s``; a GB/s metric whose name contains ``ceiling``,
``roofline`` or ``peak`` is taken as the roofline the others are drawn against.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.stats import (
    BootstrapConfig,
    Estimate,
    aggregate_all,
    aggregate_estimate,
    performance_profile,
    probability_of_improvement,
)
from harness.report import plots
from harness.tracking.reader import RunStore, SuiteRun, scores_by_algorithm

MAX_METRICS_PLOTTED = 12
_CEILING_WORDS = ("ceiling", "roofline", "peak")


@dataclass
class LeaderboardRow:
    rank: int
    algorithm: str
    estimates: dict[str, Estimate]
    n_runs: int
    n_environments: int


@dataclass
class MetricSection:
    """Everything the report shows about one metric."""

    name: str
    unit: str
    direction: str
    threshold: float
    description: str
    leaderboard: list[LeaderboardRow]
    environments: list[str]
    per_environment: dict[str, dict[str, Estimate]]  # algorithm -> environment -> mean with CI
    improvement: Estimate | None = None  # P(first beats second)
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, data URI)


@dataclass
class SideBySide:
    """Two algorithms of one run, per metric and environment (the leaderboard diff a reviewer reads)."""

    first: str
    second: str
    rows: list[dict[str, Any]]


@dataclass
class ReportContent:
    run: SuiteRun
    ui_command: str
    ui_path: str
    metrics: list[MetricSection]
    curve_plots: list[tuple[str, str]]
    roofline_plots: list[tuple[str, str]]
    failures: list[dict[str, str]]
    machines: list[dict[str, str]]
    side_by_side: SideBySide | None
    comparison: Any | None
    trends: list[tuple[str, str, str]]  # (metric, data URI, drift summary)
    bootstrap: BootstrapConfig
    seeds: list[str]
    generated: str
    counts: dict[str, int]

    @property
    def title(self) -> str:
        return f"{self.run.suite} ({self.run.profile})"


def _leaderboard(
    table: dict[str, dict[str, list[float]]], higher: bool, config: BootstrapConfig
) -> list[LeaderboardRow]:
    rows = []
    for algorithm, per_env in table.items():
        tasks = list(per_env.values())
        rows.append(LeaderboardRow(0, algorithm, aggregate_all(tasks, config), sum(len(t) for t in tasks), len(tasks)))
    rows.sort(key=lambda row: -row.estimates["iqm"].value if higher else row.estimates["iqm"].value)
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
    return rows


def _metric_section(run: SuiteRun, metric: str, config: BootstrapConfig, plot: bool) -> MetricSection:
    info = run.info(metric)
    table = scores_by_algorithm(run, metric)
    board = _leaderboard(table, info.higher_is_better, config)
    environments = sorted({env for per_env in table.values() for env in per_env})
    per_environment = {
        algorithm: {env: aggregate_estimate([values], "mean", config) for env, values in per_env.items()}
        for algorithm, per_env in table.items()
    }
    section = MetricSection(
        metric, info.unit, info.direction, info.threshold, info.description, board, environments, per_environment
    )
    if len(board) >= 2:
        section.improvement = probability_of_improvement(
            table[board[0].algorithm], table[board[1].algorithm], config, info.higher_is_better
        )
    if plot and board:
        section.plots.append(
            (
                "Aggregates with 95% stratified bootstrap intervals",
                plots.aggregate_intervals(metric, info.unit, {row.algorithm: row.estimates for row in board}),
            )
        )
        all_scores = np.concatenate([np.asarray(v, dtype=float) for per in table.values() for v in per.values()])
        if all_scores.size >= 4 and np.ptp(all_scores) > 0:
            thresholds = np.linspace(all_scores.min(), all_scores.max(), 60)
            profiles = {
                row.algorithm: performance_profile(
                    list(table[row.algorithm].values()), thresholds, config, info.higher_is_better
                )
                for row in board
            }
            section.plots.append(
                (
                    "Performance profile (fraction of runs better than each threshold)",
                    plots.performance_profiles(metric, info.unit, profiles, info.higher_is_better),
                )
            )
    return section


def _curve_plots(run: SuiteRun) -> list[tuple[str, str]]:
    by_name: dict[str, dict[str, dict[str, list[list[tuple[int, float]]]]]] = {}
    for cell in run.ok_cells:
        for name, points in cell.curves.items():
            if len(points) >= 2:
                by_name.setdefault(name, {}).setdefault(cell.environment, {}).setdefault(cell.algorithm, []).append(
                    points
                )
    return [(name, plots.score_curves(name, curves)) for name, curves in sorted(by_name.items())]


def _roofline_plots(run: SuiteRun) -> list[tuple[str, str]]:
    gbps = [m for m in run.metric_names if run.info(m).unit.replace(" ", "") == "GB/s"]
    ceilings = [m for m in gbps if any(word in m for word in _CEILING_WORDS)]
    found = []
    for metric in [m for m in gbps if m not in ceilings][:MAX_METRICS_PLOTTED]:
        values: dict[str, dict[str, float]] = {}
        for (algorithm, environment), samples in _grouped(run, metric).items():
            values.setdefault(algorithm, {})[environment] = float(np.median(samples))
        ceiling_values: dict[str, float] = {}
        if ceilings:
            for (_algorithm, environment), samples in _grouped(run, ceilings[0]).items():
                ceiling_values[environment] = max(ceiling_values.get(environment, 0.0), float(np.median(samples)))
        found.append((metric, plots.roofline(metric, values, ceiling_values, ceilings[0] if ceilings else "")))
    return found


def _grouped(run: SuiteRun, metric: str) -> dict[tuple[str, str], list[float]]:
    from harness.tracking.reader import values_by_case

    return values_by_case(run, metric)


def _side_by_side(run: SuiteRun, sections: Sequence[MetricSection]) -> SideBySide | None:
    ranked = [s for s in sections if len(s.leaderboard) >= 2]
    if not ranked:
        return None
    first, second = ranked[0].leaderboard[0].algorithm, ranked[0].leaderboard[1].algorithm
    rows = []
    for section in sections:
        a, b = section.per_environment.get(first, {}), section.per_environment.get(second, {})
        for env in section.environments:
            if env in a and env in b:
                x, y = a[env].value, b[env].value
                change = (y - x) / abs(x) if x else math.nan
                rows.append(
                    {"metric": section.name, "unit": section.unit, "environment": env, "first": x, "second": y,
                     "change": change}
                )  # fmt: skip
    return SideBySide(first, second, rows)


def _failures(run: SuiteRun) -> list[dict[str, str]]:
    return [
        {"status": c.status, "algorithm": c.algorithm, "environment": c.environment, "seed": c.seed,
         "reason": c.error or "(no reason recorded)", "run_id": c.run_id}
        for c in run.cells
        if c.status != "ok"
    ]  # fmt: skip


def _machines(run: SuiteRun) -> list[dict[str, str]]:
    """Distinct machine/version sets among the run and its cells (more than one means mixed hardware)."""
    seen: dict[str, dict[str, str]] = {}
    for cell in run.cells:
        tags = cell.tags
        facts = {
            "fingerprint": tags.get("harness.fingerprint", run.fingerprint),
            "cpu": tags.get("harness.machine.cpu", run.machine.get("cpu", "")),
            "gpu": tags.get("harness.machine.gpu", run.machine.get("gpu", "")),
        }
        for key, value in sorted(tags.items()):
            if key.startswith("harness.versions."):
                facts[key.removeprefix("harness.versions.")] = value
        seen.setdefault(facts["fingerprint"] or repr(sorted(facts.items())), facts)
    if not seen:
        seen[run.fingerprint] = {"fingerprint": run.fingerprint, **run.machine}
    return list(seen.values())


def build_report(
    run: SuiteRun,
    store: RunStore,
    config: BootstrapConfig,
    *,
    comparison: Any | None = None,
    trends: list[tuple[str, str, str]] | None = None,
) -> ReportContent:
    """Compute every statistic and plot of the report for ``run``."""
    names = run.metric_names
    sections = [_metric_section(run, m, config, plot=i < MAX_METRICS_PLOTTED) for i, m in enumerate(names)]
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    for cell in run.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    return ReportContent(
        run=run,
        ui_command=store.ui_command(),
        ui_path=f"#/experiments/{run.experiment_id}/runs/{run.run_id}",
        metrics=sections,
        curve_plots=_curve_plots(run),
        roofline_plots=_roofline_plots(run),
        failures=_failures(run),
        machines=_machines(run),
        side_by_side=_side_by_side(run, sections),
        comparison=comparison,
        trends=trends or [],
        bootstrap=config,
        seeds=[str(s) for s in sorted({c.seed for c in run.cells})],
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        counts=counts,
    )


def render_html(content: ReportContent) -> str:
    import jinja2

    from harness.report.formats import format_change, format_p, format_value

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["value"] = lambda v, unit="": format_value(v, unit)
    environment.filters["interval"] = _interval
    environment.filters["pct"] = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1%}"
    environment.globals.update(format_change=format_change, format_p=format_p, format_value=format_value)
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(content.run.start_time_ms / 1000))
    return environment.get_template("report.html.j2").render(c=content, run=content.run, started=start)


def _interval(estimate: Estimate) -> str:
    from harness.report.formats import format_value

    if not estimate.has_interval:
        return ""
    return f"[{format_value(estimate.low)}, {format_value(estimate.high)}]"


def render_markdown(content: ReportContent) -> str:
    from harness.report.formats import _md_cell, format_value, to_markdown

    run = content.run
    lines = [
        f"# {_md_cell(content.title)}",
        "",
        f"Run `{run.run_id}` · commit {_md_cell(run.tags.get('harness.git_commit', '?')[:12])}"
        + (" (dirty)" if run.tags.get("harness.git_dirty") == "true" else "")
        + f" · {content.counts['ok']} ok, {content.counts['failed']} failed, {content.counts['skipped']} skipped"
        + f" · {_md_cell(run.machine.get('cpu', '?'))} / GPU {_md_cell(run.machine.get('gpu', 'none'))}",
        "",
    ]
    for section in content.metrics:
        arrow = "higher is better" if section.direction == "higher" else "lower is better"
        unit = f" ({_md_cell(section.unit)})" if section.unit and section.unit != "1" else ""
        lines += [
            f"## {_md_cell(section.name)}{unit}, {arrow}",
            "",
            "| # | algorithm | IQM [95% CI] | mean | median | runs |",
            "|---|---|---|---|---|---|",
        ]
        for row in section.leaderboard:
            iqm = row.estimates["iqm"]
            lines.append(
                f"| {row.rank} | {_md_cell(row.algorithm)} | {format_value(iqm.value)} {_md_cell(_interval(iqm))} | "
                f"{format_value(row.estimates['mean'].value)} | {format_value(row.estimates['median'].value)} | "
                f"{row.n_runs} |"
            )
        if section.improvement is not None and not math.isnan(section.improvement.value):
            first, second = section.leaderboard[0].algorithm, section.leaderboard[1].algorithm
            lines += [
                "",
                f"P({_md_cell(first)} beats {_md_cell(second)}) = {section.improvement.value:.2f} "
                f"{_md_cell(_interval(section.improvement))}",
            ]
        lines.append("")
    if content.failures:
        lines += ["## Failed and skipped cells", "", "| status | algorithm | environment | seed | reason |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for failure in content.failures:
            lines.append(
                "| "
                + " | ".join(
                    _md_cell(failure[k])[:200] for k in ("status", "algorithm", "environment", "seed", "reason")
                )
                + " |"
            )
        lines.append("")
    if content.comparison is not None:
        lines.append(to_markdown(content.comparison, heading_level=2))
    for metric, _uri, summary in content.trends:
        lines.append(f"- trend of {_md_cell(metric)}: {_md_cell(summary)}")
    lines += [
        "",
        f"Open in MLflow: `{content.ui_command}` then {content.ui_path}",
        "",
        f"Intervals: {content.bootstrap.confidence:.0%} {content.bootstrap.method} stratified bootstrap, "
        f"{content.bootstrap.n_resamples} resamples, seed {content.bootstrap.seed}; seeds {', '.join(content.seeds)}.",
    ]
    return "\n".join(lines) + "\n"


def write_report(content: ReportContent, folder: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``index.html`` and/or ``report.md`` into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if "html" in formats:
        path = folder / "index.html"
        path.write_text(render_html(content), encoding="utf-8")
        written.append(path)
    if "md" in formats:
        path = folder / "report.md"
        path.write_text(render_markdown(content), encoding="utf-8")
        written.append(path)
    return written
