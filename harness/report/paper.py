"""The table a paper prints: per metric, algorithms x tasks, each cell the IQM over seeds with its interval.

Offline-RL and quantization papers print one matrix per metric: a row per algorithm, a column per task in the
suite's order, the best entry of each column (and every entry tied with it) in bold, and, where the metric is
comparable across tasks (normalized scores), the pooled aggregate as the last column. :func:`paper_tables`
builds these from the report's rankings (the same numbers as the leaderboards: rliable's IQM with its
stratified-bootstrap interval, ties as :mod:`harness.analysis.ranking` decides them); the writers lay them out
as HTML, Markdown, LaTeX (booktabs, no other package) and a CSV of the aggregates.

Each algorithm's origin is a numbered footnote (``reported: <source>`` for imported results); a row that is
not like the others (another machine for a hardware-dependent metric, another dataset or budget) carries a
lettered footnote with the reason. Where the number of runs differs between algorithms of a column, every
cell of that column shows its n.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.ranking import POOLED, RankedRow

#: The pooled column's heading.
POOLED_COLUMN = "pooled"
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "^": r"\textasciicircum{}",
    "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
}  # fmt: skip


def number(value: float) -> str:
    """A value as every paper table prints it (4 significant digits; the CSV keeps the full value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.0f}" if abs(value) < 1e7 else f"{value:.3e}"  # 90003, never 9e+04


@dataclass
class PaperTable:
    """One metric's matrix: ``cells[(algorithm, column)]`` is the ranking row of that algorithm in that task."""

    metric: str
    unit: str
    direction: str
    columns: list[str]
    algorithms: list[str]
    cells: dict[tuple[str, str], RankedRow]
    #: algorithm -> footnote number of its origin (1, 2, ...), and the numbered origins.
    origin_notes: dict[str, int] = field(default_factory=dict)
    origins: list[str] = field(default_factory=list)
    #: algorithm -> letters of its caveats, and the lettered caveats.
    mark_notes: dict[str, list[str]] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == "higher" else "↓"

    @property
    def direction_text(self) -> str:
        return "higher is better" if self.direction == "higher" else "lower is better"

    def cell(self, algorithm: str, column: str) -> RankedRow | None:
        return self.cells.get((algorithm, column))

    def shows_n(self, column: str) -> bool:
        """Whether the column's algorithms have different numbers of runs (then every cell shows its n)."""
        counts = {row.n_runs for (_a, c), row in self.cells.items() if c == column}
        return len(counts) > 1

    def footnote_keys(self, algorithm: str) -> list[str]:
        keys = [str(self.origin_notes[algorithm])] if algorithm in self.origin_notes else []
        return keys + self.mark_notes.get(algorithm, [])

    def caption(self) -> str:
        unit = f" ({self.unit})" if self.unit and self.unit != "1" else ""
        pooled = f"; {POOLED_COLUMN}: over all tasks" if POOLED_COLUMN in self.columns else ""
        return (
            f"{self.metric}{unit}, {self.direction_text}: IQM over seeds [95% stratified bootstrap interval]; "
            f"best and tied with the best in bold{pooled}."
        )


def paper_tables(
    sections: Sequence[Any],
    algorithm_order: Sequence[str] | None = None,
    provenance: Mapping[str, str] | None = None,
    marks: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> list[PaperTable]:
    """One :class:`PaperTable` per metric section of a report (:class:`harness.report.build.MetricSection`).

    ``algorithm_order``: the rows' order (default: alphabetical); ``provenance``: algorithm -> where it comes
    from (numbered footnotes, shown when there is more than one origin or any is reported); ``marks``: metric
    -> algorithm -> caveats.
    """
    provenance = dict(provenance or {})
    show_origins = len(set(provenance.values())) > 1 or any(text.startswith("reported") for text in provenance.values())
    tables = []
    for section in sections:
        columns: list[str] = []
        cells: dict[tuple[str, str], RankedRow] = {}
        by_group = {ranking.group: ranking for ranking in section.rankings}
        for environment in section.environments:
            if environment in by_group:
                columns.append(environment)
                cells.update({(row.algorithm, environment): row for row in by_group[environment].rows})
        if POOLED in by_group:
            columns.append(POOLED_COLUMN)
            cells.update({(row.algorithm, POOLED_COLUMN): row for row in by_group[POOLED].rows})
        present = {algorithm for algorithm, _ in cells}
        order = [a for a in (algorithm_order or []) if a in present]
        algorithms = order + sorted(present - set(order))
        table = PaperTable(section.name, section.unit, section.direction, columns, algorithms, cells)
        if show_origins:
            for algorithm in algorithms:
                text = provenance.get(algorithm)
                if text is None:
                    continue
                if text not in table.origins:
                    table.origins.append(text)
                table.origin_notes[algorithm] = table.origins.index(text) + 1
        for algorithm, reasons in (marks or {}).get(section.name, {}).items():
            for reason in reasons:
                if reason not in table.marks:
                    table.marks.append(reason)
                table.mark_notes.setdefault(algorithm, []).append(chr(ord("a") + table.marks.index(reason)))
        tables.append(table)
    return tables


def _interval(row: RankedRow) -> str:
    estimate = row.estimate
    return f"[{number(estimate.low)}, {number(estimate.high)}]" if estimate.has_interval else ""


# -- Markdown ----------------------------------------------------------------------------------------------
def to_markdown(table: PaperTable) -> str:
    from harness.report.formats import _md_cell

    lines = [f"**{_md_cell(table.metric)}** {table.arrow} {_md_cell(table.caption())}", ""]
    lines.append("| algorithm | " + " | ".join(_md_cell(column) for column in table.columns) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    for algorithm in table.algorithms:
        keys = table.footnote_keys(algorithm)
        name = _md_cell(algorithm) + (f"<sup>{','.join(keys)}</sup>" if keys else "")
        cells = []
        for column in table.columns:
            row = table.cell(algorithm, column)
            if row is None:
                cells.append("–")
                continue
            value = number(row.estimate.value)
            text = f"**{value}**" if row.best else value
            interval = _interval(row)
            text += f" {_md_cell(interval)}" if interval else ""
            text += f" (n={row.n_runs})" if table.shows_n(column) else ""
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for index, text in enumerate(table.origins, start=1):
        lines.append(f"<sup>{index}</sup> {_md_cell(text)}  ")
    for index, text in enumerate(table.marks):
        lines.append(f"<sup>{chr(ord('a') + index)}</sup> {_md_cell(text)}  ")
    return "\n".join(lines).rstrip() + "\n"


# -- LaTeX -------------------------------------------------------------------------------------------------
def latex_escape(text: object) -> str:
    """Text from runs and files as LaTeX text: every special character escaped, control characters dropped."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text) if char.isprintable())


def to_latex(table: PaperTable) -> str:
    """A ``table`` float with a booktabs ``tabular`` (``\\usepackage{booktabs}``; nothing else is needed)."""
    arrow = r"$\uparrow$" if table.direction == "higher" else r"$\downarrow$"
    lines = [
        f"% harness paper table: {latex_escape(table.metric)}",
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + latex_escape(table.caption()) + "}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        f"Algorithm ({arrow}) & " + " & ".join(latex_escape(column) for column in table.columns) + r" \\",
        r"\midrule",
    ]
    for algorithm in table.algorithms:
        keys = table.footnote_keys(algorithm)
        name = latex_escape(algorithm) + (r"\textsuperscript{" + ",".join(keys) + "}" if keys else "")
        cells = []
        for column in table.columns:
            row = table.cell(algorithm, column)
            if row is None:
                cells.append("--")
                continue
            value = number(row.estimate.value).replace("–", "--")
            text = r"\textbf{" + value + "}" if row.best else value
            interval = _interval(row)
            text += r" {\scriptsize " + interval + "}" if interval else ""
            text += f" {{\\scriptsize (n={row.n_runs})}}" if table.shows_n(column) else ""
            cells.append(text)
        lines.append(f"{name} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = [f"\\textsuperscript{{{i}}}{latex_escape(text)}" for i, text in enumerate(table.origins, start=1)]
    notes += [f"\\textsuperscript{{{chr(ord('a') + i)}}}{latex_escape(text)}" for i, text in enumerate(table.marks)]
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize " + r" \\ ".join(notes) + "}"]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


# -- HTML --------------------------------------------------------------------------------------------------
def to_html(table: PaperTable) -> str:
    """The matrix as an HTML table (every run-provided string escaped)."""
    from markupsafe import escape

    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    body = []
    for algorithm in table.algorithms:
        keys = table.footnote_keys(algorithm)
        sup = f"<sup>{escape(','.join(keys))}</sup>" if keys else ""
        cells = []
        for column in table.columns:
            row = table.cell(algorithm, column)
            if row is None:
                cells.append('<td class="num">–</td>')
                continue
            value = escape(number(row.estimate.value))
            shown = f"<strong>{value}</strong>" if row.best else str(value)
            interval = _interval(row)
            extra = f' <span class="ci">{escape(interval)}</span>' if interval else ""
            extra += f' <span class="ci">n={row.n_runs}</span>' if table.shows_n(column) else ""
            classes = "num best" if row.best else "num"
            cells.append(f'<td class="{classes}" data-value="{row.estimate.value!r}">{shown}{extra}</td>')
        body.append(f'<tr><td class="label">{escape(algorithm)}{sup}</td>{"".join(cells)}</tr>')
    notes = [f"<sup>{i}</sup> {escape(text)}" for i, text in enumerate(table.origins, start=1)]
    notes += [f"<sup>{chr(ord('a') + i)}</sup> {escape(text)}" for i, text in enumerate(table.marks)]
    footer = f'<p class="muted footnotes">{"<br>".join(notes)}</p>' if notes else ""
    return (
        f'<div class="scroll"><table class="paper" data-metric="{escape(table.metric)}">'
        f"<caption>{escape(table.caption())}</caption>"
        f"<thead><tr><th>algorithm {escape(table.arrow)}</th>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        f"</table></div>{footer}"
    )


# -- CSV of the aggregates ---------------------------------------------------------------------------------
AGGREGATE_COLUMNS = (
    "metric", "unit", "direction", "algorithm", "environment", "iqm", "ci_low", "ci_high", "n_runs", "n_tasks",
    "rank", "tied", "best", "provenance", "marks",
)  # fmt: skip


def aggregate_rows(tables: Sequence[PaperTable]) -> list[dict[str, Any]]:
    """Every cell of every table as one row with its full-precision numbers (``environment`` is ``pooled``
    for the pooled column)."""
    rows = []
    for table in tables:
        for algorithm in table.algorithms:
            origin = table.origins[table.origin_notes[algorithm] - 1] if algorithm in table.origin_notes else ""
            marks = "; ".join(table.marks[ord(key) - ord("a")] for key in table.mark_notes.get(algorithm, []))
            for column in table.columns:
                row = table.cell(algorithm, column)
                if row is None:
                    continue
                estimate = row.estimate
                rows.append({
                    "metric": table.metric, "unit": table.unit, "direction": table.direction, "algorithm": algorithm,
                    "environment": column, "iqm": estimate.value,
                    "ci_low": estimate.low if estimate.has_interval else None,
                    "ci_high": estimate.high if estimate.has_interval else None,
                    "n_runs": estimate.n_runs, "n_tasks": estimate.n_tasks, "rank": row.rank, "tied": row.tied,
                    "best": row.best, "provenance": origin, "marks": marks,
                })  # fmt: skip
    return rows


def to_csv(tables: Sequence[PaperTable]) -> bytes:
    """The aggregates as CSV (pyarrow's writer; text cells guarded against spreadsheet formulas)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from harness.untrusted import csv_cell

    types = {"iqm": pa.float64(), "ci_low": pa.float64(), "ci_high": pa.float64(), "n_runs": pa.int64(),
             "n_tasks": pa.int64(), "rank": pa.int64(), "tied": pa.bool_(), "best": pa.bool_()}  # fmt: skip
    schema = pa.schema([(name, types.get(name, pa.string())) for name in AGGREGATE_COLUMNS])
    rows = [{key: csv_cell(value) for key, value in row.items()} for row in aggregate_rows(tables)]
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), sink)
    return bytes(sink.getvalue().to_pybytes())
