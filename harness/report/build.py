"""From a suite run in MLflow to the content of a report, then to HTML and Markdown files.

:func:`build_report` computes everything (statistics, plots) once into a :class:`ReportContent`; the HTML
template (``templates/report.html.j2``, Jinja2 with autoescaping on, so every run-, suite- and plugin-provided
string is escaped) and the Markdown writer only lay it out.

Roofline plots are drawn for metrics whose unit is ``GB/s``; a GB/s metric whose name contains ``ceiling``,
``roofline`` or ``peak`` is taken as the roofline the others are drawn against.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.ranking import (
    RANKING_RULES,
    RankedRow,
    Ranking,
    describe_change,
    ordered_environments,
    rank_metric,
)
from harness.analysis.stability import stability_warnings
from harness.analysis.stats import BootstrapConfig, Estimate, performance_profile
from harness.record import NEVER_RAN, SuiteRun, with_display_labels
from harness.report import plots
from harness.report.combine import Origin, combine_runs
from harness.report.paper import PaperTable, paper_tables
from harness.report.paper import to_csv as paper_csv
from harness.report.paper import to_html as paper_html
from harness.report.paper import to_latex as paper_latex
from harness.report.paper import to_markdown as paper_markdown
from harness.tracking.reader import RunStore

MAX_METRICS_PLOTTED = 12
_CEILING_WORDS = ("ceiling", "roofline", "peak")


@dataclass
class MetricSection:
    """Everything the report shows about one metric: one ranking per comparable group."""

    name: str
    unit: str
    direction: str
    threshold: float
    description: str
    rankings: list[Ranking]
    environments: list[str]
    comparable_across_tasks: bool = False
    stability: list[str] = field(default_factory=list)  # "algorithm / environment: warning"
    plots: list[tuple[str, str]] = field(default_factory=list)  # (caption, inline SVG)
    #: algorithm -> why its rows are not like the others (another machine, dataset or budget): shown as a mark.
    marks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == "higher" else "↓"

    @property
    def leaderboard(self) -> list[RankedRow]:
        """The first ranking's rows (the pooled one where there is one)."""
        return self.rankings[0].rows if self.rankings else []


@dataclass
class SummaryTable:
    """One ranking group of the summary: its algorithms x its metrics, each cell the ranking's row."""

    group: str
    metrics: list[tuple[str, str, str]]  # (name, unit, arrow)
    algorithms: list[str]
    cells: dict[tuple[str, str], RankedRow]  # (algorithm, metric) -> row

    def cell(self, algorithm: str, metric: str) -> RankedRow | None:
        return self.cells.get((algorithm, metric))


@dataclass
class SideBySide:
    """The top two algorithms of each metric's ranking groups (the pair is chosen per metric and group)."""

    rows: list[dict[str, Any]]


@dataclass
class ReportContent:
    run: SuiteRun
    ui_command: str
    ui_path: str
    metrics: list[MetricSection]
    summary: list[SummaryTable]
    curve_plots: list[tuple[str, str]]
    roofline_plots: list[tuple[str, str]]
    pareto_plots: list[tuple[str, str]]
    failures: list[dict[str, str]]
    machines: list[dict[str, str]]
    side_by_side: SideBySide | None
    comparison: Any | None
    trends: list[tuple[str, str, str]]  # (metric, inline SVG, drift summary)
    bootstrap: BootstrapConfig
    seeds: list[str]
    generated: str
    counts: dict[str, int]
    ranking_rules: str = RANKING_RULES
    notes: list[str] = field(default_factory=list)
    #: Nightly alerts: dicts with state (new, open, fixed), metric, algorithm, environment, size, since, note.
    alerts: list[dict[str, str]] = field(default_factory=list)
    #: Where every row comes from (one origin per selected run) and each algorithm's origin.
    origins: list[Origin] = field(default_factory=list)
    algorithm_origins: dict[str, Origin] = field(default_factory=dict)
    #: The algorithm x task matrices a paper prints, one per metric.
    paper: list[PaperTable] = field(default_factory=list)
    #: One colour per algorithm, in every plot.
    colours: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        if len(self.origins) > 1:
            suites = sorted({origin.suite for origin in self.origins})
            return f"{', '.join(suites)}: leaderboard of {len(self.origins)} runs"
        return f"{self.run.suite} ({self.run.profile})"

    @property
    def combined(self) -> bool:
        return len(self.origins) > 1


def _stability(run: SuiteRun, metric: str, unit: str) -> list[str]:
    found = []
    for (algorithm, environment), values in sorted(run.values_by_case(metric).items()):
        for warning in stability_warnings(values, unit):
            found.append(f"{algorithm} / {environment}: {warning}")
    return found


def _metric_section(
    run: SuiteRun,
    metric: str,
    config: BootstrapConfig,
    plot: bool,
    order: Sequence[str] | None = None,
    colours: dict[str, str] | None = None,
) -> MetricSection:
    info = run.info(metric)
    table = run.scores_by_algorithm(metric)
    rankings = rank_metric(
        table, info.higher_is_better, config, comparable_across_tasks=info.comparable_across_tasks,
        environment_order=order,
    )  # fmt: skip
    environments = ordered_environments({env for per_env in table.values() for env in per_env}, order)
    section = MetricSection(
        metric, info.unit, info.direction, info.threshold, info.description, rankings, environments,
        info.comparable_across_tasks, _stability(run, metric, info.unit),
    )  # fmt: skip
    if plot and rankings:
        section.plots.append(
            (
                f"IQM with {config.confidence:.0%} stratified bootstrap intervals, per ranking group",
                plots.ranking_intervals(metric, info.unit, rankings, colours),
            )
        )
        pooled = [v for per in table.values() for values in per.values() for v in values]
        all_scores = np.asarray(pooled, dtype=float)
        if info.comparable_across_tasks and all_scores.size >= 4 and np.ptp(all_scores) > 0:
            thresholds = np.linspace(all_scores.min(), all_scores.max(), 60)
            profiles = {
                row.algorithm: performance_profile(
                    list(table[row.algorithm].values()), thresholds, config, info.higher_is_better
                )
                for row in rankings[0].rows
            }
            section.plots.append(
                (
                    "Performance profile (fraction of runs better than each threshold)",
                    plots.performance_profiles(metric, info.unit, profiles, info.higher_is_better, colours),
                )
            )
    return section


def _summary(sections: Sequence[MetricSection], order: Sequence[str] | None = None) -> list[SummaryTable]:
    """Per ranking group (the pooled one first, then each environment in the suite's order): algorithm x
    metric."""
    from harness.analysis.ranking import POOLED

    tables: dict[str, SummaryTable] = {}
    for section in sections:
        for ranking in section.rankings:
            table = tables.setdefault(ranking.group, SummaryTable(ranking.group, [], [], {}))
            table.metrics.append((section.name, section.unit, section.arrow))
            for row in ranking.rows:
                if row.algorithm not in table.algorithms:
                    table.algorithms.append(row.algorithm)
                table.cells[(row.algorithm, section.name)] = row
    for table in tables.values():
        table.algorithms.sort()
    groups = ordered_environments([group for group in tables if group != POOLED], order)
    return ([tables[POOLED]] if POOLED in tables else []) + [tables[group] for group in groups]


def _curve_plots(run: SuiteRun, colours: dict[str, str] | None = None) -> list[tuple[str, str]]:
    by_name: dict[str, dict[str, dict[str, list[list[tuple[int, float]]]]]] = {}
    for cell in run.ok_cells:
        for name, points in cell.curves.items():
            if len(points) >= 2:
                by_name.setdefault(name, {}).setdefault(cell.environment, {}).setdefault(cell.algorithm, []).append(
                    points
                )
    return [(name, plots.score_curves(name, curves, colours)) for name, curves in sorted(by_name.items())]


def _roofline_plots(run: SuiteRun, colours: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Throughput against the measured ceiling: drawn only where the run measured a ceiling metric."""
    gbps = [m for m in run.metric_names if run.info(m).unit.replace(" ", "") == "GB/s"]
    ceilings = [m for m in gbps if any(word in m for word in _CEILING_WORDS)]
    if not ceilings:
        return []
    ceiling_values: dict[str, list[float]] = {}
    for (_algorithm, environment), samples in run.values_by_case(ceilings[0]).items():
        ceiling_values.setdefault(environment, []).extend(samples)
    found = []
    for metric in [m for m in gbps if m not in ceilings][:MAX_METRICS_PLOTTED]:
        values = {case: samples for case, samples in run.values_by_case(metric).items()}
        found.append((metric, plots.roofline(metric, values, ceiling_values, ceilings[0], colours)))
    return found


def _pareto_plots(run: SuiteRun, colours: dict[str, str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """Trade-off plots the suite declares (suite.json ``report.pareto``: pairs of metric names)."""
    found, notes = [], []
    pairs = run.report_options.get("pareto") or []
    for pair in pairs if isinstance(pairs, list) else []:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            notes.append(f"[report] pareto entry {pair!r} is not a pair of metric names; skipped")
            continue
        x, y = str(pair[0]), str(pair[1])
        missing = [m for m in (x, y) if m not in run.metric_names]
        if missing:
            notes.append(f"[report] pareto {x} against {y}: no values of {', '.join(missing)} in this run")
            continue
        xs, ys = run.values_by_case(x), run.values_by_case(y)
        points = {case: (float(np.median(xs[case])), float(np.median(ys[case]))) for case in xs if case in ys}
        found.append((f"{y} against {x}", plots.pareto(run.info(x), run.info(y), points, colours)))
    return found, notes


def _side_by_side(sections: Sequence[MetricSection]) -> SideBySide | None:
    """Leader against runner-up of every ranking, in the ranking's aggregate (IQM), the change labelled."""
    rows = []
    for section in sections:
        for ranking in section.rankings:
            if len(ranking.rows) < 2:
                continue
            first, second = ranking.rows[0], ranking.rows[1]
            scale = max(abs(row.estimate.value) for row in ranking.rows)
            change = describe_change(
                first.estimate.value, second.estimate.value, section.direction == "higher", section.unit, scale
            )
            rows.append(
                {"metric": section.name, "unit": section.unit, "group": ranking.group, "first": first,
                 "second": second, "change": change, "tied": second.tied,
                 "probability": ranking.probability(first.algorithm, second.algorithm)}
            )  # fmt: skip
    return SideBySide(rows) if rows else None


def _failures(run: SuiteRun) -> list[dict[str, str]]:
    return [
        {"status": c.status, "algorithm": c.algorithm, "environment": c.environment, "seed": c.seed_text,
         "reason": c.error or "(no reason recorded)", "run_id": c.run_id}
        for c in run.cells
        if c.status != "ok"
    ]  # fmt: skip


def _machines(run: SuiteRun) -> list[dict[str, str]]:
    """Distinct machines among the run's cells (more than one means mixed hardware)."""
    seen: dict[str, dict[str, str]] = {}
    for cell in run.cells:
        machine = run.cell_machine(cell)
        facts = {"fingerprint": machine.fingerprint, "cpu": machine.cpu, "gpu": machine.gpu}
        seen.setdefault(facts["fingerprint"] or repr(sorted(facts.items())), facts)
    if not seen:
        seen[run.fingerprint] = {"fingerprint": run.fingerprint, **run.machine}
    return list(seen.values())


def ui_command(store: RunStore, show_paths: bool = False) -> str:
    """The MLflow UI command for the store; a local store's folder is a local path, written only with
    ``show_paths`` (otherwise the command is run from the store's folder)."""
    from harness.tracking.uri import sqlite_path

    path = sqlite_path(store.tracking_uri)
    if path is None or show_paths:
        return store.ui_command()
    return f"mlflow ui --backend-store-uri sqlite:///{path.name}   # in the folder that holds {path.name}"


def build_report(
    run: SuiteRun,
    store: RunStore,
    config: BootstrapConfig,
    *,
    comparison: Any | None = None,
    trends: list[tuple[str, str, str]] | None = None,
    alerts: list[dict[str, str]] | None = None,
    others: Sequence[SuiteRun] = (),
    show_paths: bool = False,
) -> ReportContent:
    """Compute every statistic and plot of the report for ``run``, or of ``run`` and ``others`` as one
    leaderboard (:func:`harness.report.combine.combine_runs`: every row with its origin, comparability
    checked)."""
    combined = combine_runs([run, *others], show_paths=show_paths)
    run = with_display_labels(combined.run)
    display = {cell.environment: cell.environment_display for cell in combined.run.cells}
    order = [display.get(name, name) for name in combined.environments]
    algorithms = list(dict.fromkeys(combined.algorithm_origins))
    colours = plots.algorithm_colours(algorithms)
    names = run.metric_names
    sections = [
        _metric_section(run, m, config, plot=i < MAX_METRICS_PLOTTED, order=order, colours=colours)
        for i, m in enumerate(names)
    ]
    for section in sections:
        section.marks = {
            algorithm: list(reasons) for algorithm, reasons in combined.marks.get(section.name, {}).items()
        }
    summary = _summary(sections, order)
    pareto_plots, notes = _pareto_plots(run, colours)
    notes = [*combined.excluded, *notes]
    if any(section.marks for section in sections):
        notes.append(
            "Rows marked ⚑ are not like the others (another machine for a hardware-dependent metric, another "
            "dataset or budget profile); each mark says why."
        )
    if comparison is not None and comparison.hardware_differences:
        dependent = sorted({row.metric for row in comparison.rows if row.note.startswith("different hardware")})
        notes.append(
            "The compared runs come from different hardware or software; "
            + (f"hardware-dependent metrics ({', '.join(dependent)}) are not comparable." if dependent else
               "no compared metric depends on the hardware.")
        )  # fmt: skip
    counts = run.status_counts()
    provenance = {algorithm: origin.provenance for algorithm, origin in combined.algorithm_origins.items()}
    return ReportContent(
        run=run,
        ui_command=ui_command(store, show_paths),
        ui_path=f"#/experiments/{run.experiment_id}/runs/{run.run_id}",
        metrics=sections,
        summary=summary,
        curve_plots=_curve_plots(run, colours),
        roofline_plots=_roofline_plots(run, colours),
        pareto_plots=pareto_plots,
        failures=_failures(run),
        machines=_machines(run),
        side_by_side=_side_by_side(sections),
        comparison=comparison,
        trends=trends or [],
        alerts=alerts or [],
        bootstrap=config,
        seeds=[str(s) for s in sorted({c.seed for c in run.cells if c.seed is not None})],
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        counts=counts,
        notes=notes,
        origins=combined.origins,
        algorithm_origins=combined.algorithm_origins,
        paper=paper_tables(sections, algorithms, provenance, {s.name: s.marks for s in sections}),
        colours=colours,
    )


#: Sorts a table by the clicked header (numbers by their data-sort value); the page's only script, allowed by
#: its hash in the Content-Security-Policy.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, index) {
    th.tabIndex = 0;
    th.title = "sort by this column";
    var sort = function () {
      var body = table.tBodies[0];
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var key = function (row) {
        var cell = row.cells[index];
        if (!cell) { return ""; }
        var raw = cell.getAttribute("data-sort");
        if (raw !== null && raw !== "" && !isNaN(Number(raw))) { return Number(raw); }
        return cell.textContent.trim().toLowerCase();
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x === "number" && typeof y !== "number") { return -1; }
        if (typeof y === "number" && typeof x !== "number") { return 1; }
        var order = x < y ? -1 : x > y ? 1 : 0;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sort(); } });
  });
});
"""


def _sort_key(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def render_html(content: ReportContent) -> str:
    import base64

    import jinja2
    import markupsafe

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
    environment.filters["sortkey"] = _sort_key
    environment.filters["pct"] = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1%}"
    # Plots are SVG markup we drew (matplotlib escapes every label), so they go in unescaped.
    environment.filters["svg"] = lambda markup: markupsafe.Markup(markup)
    # Paper tables are HTML we built with every run-provided string escaped (harness.report.paper.to_html).
    environment.filters["paper_html"] = lambda table: markupsafe.Markup(paper_html(table))
    script_hash = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    environment.globals.update(format_change=format_change, format_p=format_p, format_value=format_value)
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(content.run.start_time_ms / 1000))
    return environment.get_template("report.html.j2").render(
        c=content, run=content.run, started=start, sort_script=markupsafe.Markup(SORT_SCRIPT),
        script_hash=script_hash,
    )  # fmt: skip


def _interval(estimate: Estimate) -> str:
    from harness.report.formats import format_value

    if not estimate.has_interval:
        return ""
    return f"[{format_value(estimate.low)}, {format_value(estimate.high)}]"


def _md_estimate(row: RankedRow) -> str:
    from harness.report.formats import _md_cell, format_value

    text = format_value(row.estimate.value)
    if row.estimate.has_interval:
        text += " " + _md_cell(_interval(row.estimate))
    if row.caution:
        text += f" ⚠ {_md_cell(row.caution)}"
    return text


def render_markdown(content: ReportContent) -> str:
    from harness.report.formats import _md_cell, to_markdown

    run = content.run
    counts = (
        f"{content.counts['ok']} ok, {content.counts['failed']} failed, {content.counts['skipped']} skipped"
        + (f", {content.counts['unknown']} of unknown status" if content.counts.get("unknown") else "")
        + (
            f", **{content.counts[NEVER_RAN]} never ran: INCOMPLETE** (never a baseline, not in trends)"
            if content.counts.get(NEVER_RAN)
            else ""
        )
    )
    if content.combined:
        heading = f"{len(content.origins)} runs ranked together · {counts}"
    elif run.reported:
        heading = f"Run `{run.run_id}` · {_md_cell(run.provenance)} · {counts}"
    else:
        heading = (
            f"Run `{run.run_id}` · commit {_md_cell(run.commit_text)} · {counts}"
            + f" · {_md_cell(run.machine.get('cpu', '?'))} / GPU {_md_cell(run.machine.get('gpu', 'none'))}"
        )
    lines = [f"# {_md_cell(content.title)}", "", heading, "", f"_{_md_cell(content.ranking_rules)}_", ""]
    for note in content.notes:
        lines += [f"> {_md_cell(note)}", ""]
    if content.combined:
        lines += ["## Provenance", "", "| # | run | store | machine | commit | source |", "|---|---|---|---|---|---|"]
        for index, origin in enumerate(content.origins, start=1):
            machine = "not measured here" if origin.reported else origin.machine
            source = f"reported: {origin.source}" if origin.reported else (origin.source or "measured by the harness")
            cells = [origin.run_id[:8], origin.store, machine, origin.commit, source]
            lines.append(f"| {index} | " + " | ".join(_md_cell(cell) for cell in cells) + " |")
        lines.append("")
    if content.paper:
        lines += ["## Paper tables", ""]
        for table in content.paper:
            lines += [paper_markdown(table), ""]
    for section in content.metrics:
        arrow = "higher is better" if section.direction == "higher" else "lower is better"
        unit = f" ({_md_cell(section.unit)})" if section.unit and section.unit != "1" else ""
        lines += [f"## {_md_cell(section.name)}{unit}, {arrow}", ""]
        for ranking in section.rankings:
            lines += [
                f"**{_md_cell(ranking.group)}**",
                "",
                "| # | algorithm | IQM [95% CI] | runs |",
                "|---|---|---|---|",
            ]
            for row in ranking.rows:
                marks = section.marks.get(row.algorithm)
                name = _md_cell(row.algorithm) + (f" ⚑ {_md_cell('; '.join(marks))}" if marks else "")
                lines.append(f"| {row.rank_label} | {name} | {_md_estimate(row)} | {row.n_runs} |")
            if len(ranking.rows) >= 2:
                first, second = ranking.rows[0].algorithm, ranking.rows[1].algorithm
                probability = ranking.probability(first, second)
                if probability is not None and not math.isnan(probability.value):
                    lines += [
                        "",
                        f"P({_md_cell(first)} beats {_md_cell(second)}) = {probability.value:.2f} "
                        f"{_md_cell(_interval(probability))}",
                    ]
            lines.append("")
        for warning in section.stability:
            lines.append(f"- ⚠ {_md_cell(warning)}")
        if section.stability:
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
    if content.alerts:
        lines += ["## Alerts", "", "| state | metric | algorithm | environment | change [95% CI] | since | note |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for alert in content.alerts:
            keys = ("state", "metric", "algorithm", "environment", "size", "since", "note")
            lines.append("| " + " | ".join(_md_cell(alert[k]) for k in keys) + " |")
        lines.append("")
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


#: What ``harness report --format`` can write, and the file each format goes to.
REPORT_FILES = {"html": "index.html", "md": "report.md", "tex": "tables.tex", "csv": "aggregates.csv"}


def render_latex(content: ReportContent) -> str:
    """Every paper table as a LaTeX ``table`` float (needs ``\\usepackage{booktabs}`` and nothing else)."""
    head = "% Paper tables written by `harness report`; needs \\usepackage{booktabs}.\n"
    return head + "\n".join(paper_latex(table) for table in content.paper)


def write_report(content: ReportContent, folder: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``index.html``, ``report.md``, ``tables.tex`` (the paper tables in LaTeX) and ``aggregates.csv``
    (their numbers) into ``folder``, as ``formats`` asks; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if "tex" in formats:
        path = folder / REPORT_FILES["tex"]
        path.write_text(render_latex(content), encoding="utf-8")
        written.append(path)
    if "csv" in formats:
        path = folder / REPORT_FILES["csv"]
        path.write_bytes(paper_csv(content.paper))
        written.append(path)
    if "html" in formats:
        path = folder / "index.html"
        path.write_text(render_html(content), encoding="utf-8")
        written.append(path)
    if "md" in formats:
        path = folder / "report.md"
        path.write_text(render_markdown(content), encoding="utf-8")
        written.append(path)
    return written
