"""A comparison as Markdown (pull requests, chat), JUnit XML (CI test reports) and a terminal table."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from typing import Any

from harness.analysis.compare import CaseVerdict, Comparison

_MARK = {"regressed": "❌", "failed": "❌", "improved": "✅", "inconclusive": "⚠️", "unchanged": "", "new": "🆕"}


def format_value(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    magnitude = abs(value)
    text = f"{value:.4g}" if magnitude < 1e5 else f"{value:.3e}"
    return f"{text} {unit}".strip() if unit and unit != "1" else text


def format_change(row: CaseVerdict) -> str:
    """The relative change with its interval; the absolute difference where the baseline is (near) zero."""
    from harness.analysis.ranking import near_zero

    test = row.test
    if test is None:
        return "–"
    difference = test.candidate_mean - test.baseline_mean
    if difference == 0:
        return "tied"  # an exact tie, never "+0.0%" or "-0.0% worse"
    direction = ""
    if difference != 0 and row.direction in ("higher", "lower"):
        direction = " better" if (difference > 0) == (row.direction == "higher") else " worse"
    if math.isnan(test.relative_change) or near_zero(test.baseline_mean, test.candidate_mean):
        unit = f" {row.unit}" if row.unit and row.unit != "1" else ""
        return f"{difference:+.4g}{unit} (absolute){direction}"
    text = f"{test.relative_change:+.1%}"
    if not (math.isnan(test.change_low) or math.isnan(test.change_high)):
        text += f" [{test.change_low:+.1%}, {test.change_high:+.1%}]"
    return text + direction


def format_p(row: CaseVerdict) -> str:
    if row.test is None or math.isnan(row.test.p_value):
        return "–"
    return f"{row.test.p_value:.3g} ({row.test.test})"


def _md_cell(text: object) -> str:
    # Table cells must not break the Markdown table, and run-provided text must not become markup.
    value = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    for char in "<>*_`[]":
        value = value.replace(char, f"\\{char}")
    return value


def _origin(run: Any) -> str:
    """A run's commit, or where reported results come from."""
    return run.provenance if run.reported else f"commit {run.commit_text}"


def to_markdown(comparison: Comparison, heading_level: int = 2) -> str:
    hashes = "#" * heading_level
    base, cand = comparison.baseline, comparison.candidate
    lines = [
        f"{hashes} Comparison: {_md_cell(cand.suite)} ({_md_cell(cand.profile)})",
        "",
        f"**Verdict: {_md_cell(comparison.summary)}** (exit code {comparison.exit_code})",
        "",
        f"- baseline: `{base.run_id}` ({_md_cell(_origin(base))})",
        f"- candidate: `{cand.run_id}` ({_md_cell(_origin(cand))})",
        f"- significance level: {comparison.alpha}",
    ]
    if comparison.calibration_source:
        lines.append(f"- noise calibration: {_md_cell(comparison.calibration_source)}")
    if comparison.hardware_differences:
        lines.append(
            "- ⚠️ **different hardware/software** (compared with --allow-different-hardware): "
            f"{_md_cell(comparison.hardware_summary)}"
        )
    lines += [
        "",
        "| metric | algorithm | environment | baseline | candidate | change [95% CI] | p | threshold | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in comparison.rows:
        test = row.test
        verdict = f"{_MARK.get(row.verdict, '')} {row.verdict}".strip()
        if row.repeats_needed:
            verdict += f" (needs {row.repeats_needed} repeats)"
        lines.append(
            "| "
            + " | ".join(
                _md_cell(part)
                for part in (
                    row.metric,
                    row.algorithm,
                    row.environment,
                    format_value(test.baseline_mean if test else None, row.unit),
                    format_value(test.candidate_mean if test else None, row.unit),
                    format_change(row),
                    format_p(row),
                    f"{row.threshold:.1%} ({row.threshold_source})" if row.threshold_source else "–",
                    verdict
                    + (f": {row.note}" if row.note else "")
                    + "".join(f" ⚠ {warning}" for warning in row.warnings),
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def to_junit(comparison: Comparison) -> str:
    """One test case per metric and case; regressions fail, inconclusive ones are skipped."""
    suite_name = f"harness-compare.{comparison.candidate.suite}"
    failures = len(comparison.regressions)
    skipped = len(comparison.inconclusive)
    root = ElementTree.Element(
        "testsuite",
        name=suite_name,
        tests=str(len(comparison.rows)),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
    )
    properties = ElementTree.SubElement(root, "properties")
    for key, value in (("baseline", comparison.baseline.run_id), ("candidate", comparison.candidate.run_id)):
        ElementTree.SubElement(properties, "property", name=key, value=value)
    for row in comparison.rows:
        case = ElementTree.SubElement(
            root, "testcase", classname=f"{suite_name}.{row.metric}", name=f"{row.algorithm}/{row.environment}"
        )
        message = f"{row.verdict}: change {format_change(row)}, p {format_p(row)}, threshold {row.threshold:.1%}"
        if row.note:
            message += f"; {row.note}"
        if row.verdict in ("regressed", "failed"):
            ElementTree.SubElement(case, "failure", message=message, type=row.verdict).text = message
        elif row.verdict == "inconclusive":
            ElementTree.SubElement(case, "skipped", message=message + f"; needs {row.repeats_needed} repeats")
        else:
            ElementTree.SubElement(case, "system-out").text = message
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


def print_comparison(comparison: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.untrusted import markup as escape  # control characters made visible, then markup-escaped

    console = Console(highlight=False)
    table = Table(title=f"{comparison.baseline.run_id[:8]} (baseline) -> {comparison.candidate.run_id[:8]} (candidate)")
    for column in (
        "metric",
        "algorithm",
        "environment",
        "baseline",
        "candidate",
        "change [CI]",
        "p",
        "threshold",
        "verdict",
    ):
        table.add_column(column, overflow="fold")
    colours = {"regressed": "red", "failed": "red", "improved": "green", "inconclusive": "yellow"}
    for row in comparison.rows:
        test = row.test
        verdict = row.verdict + (f" (needs {row.repeats_needed})" if row.repeats_needed else "")
        colour = colours.get(row.verdict)
        table.add_row(
            escape(row.metric),
            escape(row.algorithm),
            escape(row.environment),
            format_value(test.baseline_mean if test else None, row.unit),
            format_value(test.candidate_mean if test else None, row.unit),
            format_change(row),
            format_p(row),
            f"{row.threshold:.1%} ({row.threshold_source})" if row.threshold_source else "–",
            (f"[{colour}]{escape(verdict)}[/]" if colour else escape(verdict))
            + (f" [dim]{escape(row.note)}[/]" if row.note else ""),
        )
    console.print(table)
    for side, run in (("baseline", comparison.baseline), ("candidate", comparison.candidate)):
        if run.reported:
            console.print(f"{side} {run.run_id[:8]}: [bold]{escape(run.provenance)}[/]")
    for row in comparison.rows:
        for warning in row.warnings:
            console.print(f"[yellow]unstable:[/] {escape(row.metric)} {escape(row.algorithm)}/{escape(row.environment)}"
                          f" {escape(warning)}")  # fmt: skip
    if comparison.hardware_differences:
        console.print(f"[yellow]different hardware/software:[/] {escape(comparison.hardware_summary)}")
    console.print(escape(comparison.summary))
