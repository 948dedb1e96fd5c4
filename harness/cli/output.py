"""Terminal output: rich tables and a live progress display on a terminal, plain lines otherwise.

Labels, errors, notes and cell output are untrusted text (suite files, plugins, shared stores): every printer
here passes them through :func:`harness.untrusted.visible` (control characters shown as escapes) and, where
rich markup is on, :func:`harness.untrusted.markup` (also markup-escaped), never raw (docs/security.md).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.record import CellResult, metric_values_by_case, overflow_safe_mean
from harness.untrusted import markup, visible

_CONSOLES: dict[bool, Console] = {}


def console(stderr: bool = False) -> Console:
    if stderr not in _CONSOLES:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True)
        if not out.is_terminal:
            # Logs and pipes: wide rows rather than tables folded into an 80-column box.
            out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=160)
        _CONSOLES[stderr] = out
    return _CONSOLES[stderr]


def print_error(message: str) -> None:
    console(stderr=True).print(f"[bold red]error:[/] {markup(message, keep_newlines=True)}")


def print_notice(out: Console, message: str) -> None:
    """A line of the driver's own (delivery, resume) that quotes untrusted text (URIs, store errors)."""
    out.print(visible(message, keep_newlines=True), markup=False, soft_wrap=True)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=markup(title), show_lines=False)
    for column in columns:
        table.add_column(markup(column), overflow="fold")
    for row in rows:
        table.add_row(*(markup(value) for value in row))
    console().print(table)


class RunningCells:
    """What the display knows of the cells that are running: label, start, done of total, phase note.

    Fed from an executor thread (:meth:`update`) and the driver loop (:meth:`finish`), hence the lock.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.labels: dict[str, str] = {}
        self.running: dict[str, dict[str, Any]] = {}

    def expect(self, cells: Sequence[Any]) -> None:
        self.labels.update({cell.key: cell.label for cell in cells})

    def update(self, event: dict[str, Any]) -> dict[str, Any] | None:
        key = str(event.get("key", ""))
        if key not in self.labels:
            return None
        with self.lock:
            state = self.running.setdefault(
                key, {"label": self.labels[key], "started": time.monotonic(), "done": 0.0, "total": None, "note": ""}
            )
            state.update(done=float(event.get("done", 0.0)), total=event.get("total"), note=event.get("note", ""))
            return dict(state)

    def finish(self, key: str) -> None:
        with self.lock:
            self.running.pop(key, None)

    def fraction_running(self) -> float:
        """Sum of the running cells' completed fractions (for an overall ETA that moves between cells)."""
        with self.lock:
            return sum(min(1.0, s["done"] / s["total"]) for s in self.running.values() if s["total"] and s["total"] > 0)

    def lines(self) -> list[str]:
        now = time.monotonic()
        with self.lock:
            states = list(self.running.values())
        return [describe_running(state, now) for state in states]


def describe_running(state: dict[str, Any], now: float) -> str:
    """One running cell as plain text (printed with markup off): label and note made visible."""
    amount = f"{state['done']:.0f}/{state['total']:.0f}" if state["total"] else f"{state['done']:.0f}"
    note = f" {visible(state['note'])}" if state["note"] else ""
    return f"{visible(state['label'])} {amount}{note} ({_clock(now - state['started'])})"


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """For logs, CI and ``--json`` (no terminal): a line per finished cell, and at most one status line of the
    running cells every :attr:`interval_s` seconds, never a redraw per step."""

    interval_s = 5.0

    def __init__(self, out: Console) -> None:
        self.out = out
        self.total = self.done = self.failed = 0
        self.started = time.monotonic()
        self.cells = RunningCells()
        self._last_status = 0.0

    def start(self, total: int, already_done: int, cells: Sequence[Any] = ()) -> None:
        self.total, self.done = total, already_done
        self.started = time.monotonic()
        self.cells.expect(cells)
        if already_done:
            self.out.print(f"resuming: {already_done} of {total} cells already finished", soft_wrap=True)

    def cell_progress(self, event: dict[str, Any]) -> None:
        if self.cells.update(event) is None:
            return
        now = time.monotonic()
        if now - self._last_status < self.interval_s:
            return
        self._last_status = now
        finished = self.done + self.cells.fraction_running()
        elapsed = now - self.started
        eta = f", ETA {_clock(elapsed / finished * (self.total - finished))}" if finished > 0 else ""
        self.out.print(
            f"[{self.done}/{self.total}{eta}] running: " + "; ".join(self.cells.lines()), markup=False, soft_wrap=True
        )

    def advance(self, result: CellResult) -> None:
        self.cells.finish(result.cell.key)
        self.done += 1
        self.failed += result.status == "failed"
        detail = f" - {visible(result.error, keep_newlines=True)}" if result.error else ""
        self.out.print(
            f"[{self.done}/{self.total}] {result.status:<7} {visible(result.cell.label)} ({result.duration_s:.2f}s)"
            f"{detail}",
            markup=False,
            soft_wrap=True,
        )
        print_output_tail(self.out, result)

    def stop(self) -> None:
        pass


class LiveProgress:
    """A rich display: the overall bar (cells done, failed, elapsed, an ETA that counts the running cells'
    progress), and under it one bar per running cell with its phase and elapsed time."""

    def __init__(self, out: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta_label]}"),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.task: Any = None
        self.failed = 0
        self.done = 0
        self.total = 0
        self.cells = RunningCells()
        self.cell_tasks: dict[str, Any] = {}

    def start(self, total: int, already_done: int, cells: Sequence[Any] = ()) -> None:
        self.total, self.done = total, already_done
        self.cells.expect(cells)
        self.progress.start()
        self.task = self.progress.add_task(
            "cells", total=total, completed=already_done, amount=f"{already_done}/{total}", note="0 failed",
            eta_label="ETA",
        )  # fmt: skip

    def _overall(self) -> None:
        completed = self.done + self.cells.fraction_running()
        self.progress.update(self.task, completed=completed, amount=f"{self.done}/{self.total}",
                             note=f"{self.failed} failed")  # fmt: skip

    def cell_progress(self, event: dict[str, Any]) -> None:
        state = self.cells.update(event)
        if state is None:
            return
        key = str(event["key"])
        amount = f"{state['done']:.0f}/{state['total']:.0f}" if state["total"] else ""
        if key not in self.cell_tasks:
            # The columns render description and note as rich markup: both are escaped.
            self.cell_tasks[key] = self.progress.add_task(
                f"  {markup(state['label'])}", total=state["total"], completed=state["done"], amount=amount,
                note=markup(state["note"]), eta_label="",
            )  # fmt: skip
        else:
            self.progress.update(self.cell_tasks[key], total=state["total"], completed=state["done"], amount=amount,
                                 note=markup(state["note"]))  # fmt: skip
        self._overall()

    def advance(self, result: CellResult) -> None:
        self.cells.finish(result.cell.key)
        task = self.cell_tasks.pop(result.cell.key, None)
        if task is not None:
            self.progress.remove_task(task)
        self.done += 1
        self.failed += result.status == "failed"
        self._overall()
        if result.status == "failed":
            self.progress.console.print(
                f"[red]failed[/] {markup(result.cell.label)}: {markup(result.error or '', keep_newlines=True)}"
            )
            print_output_tail(self.progress.console, result)

    def stop(self) -> None:
        self.progress.stop()


def print_output_tail(out: Console, result: CellResult, lines: int = 15) -> None:
    """The last lines a failed cell printed, and where the whole log is."""
    if result.status != "failed" or not result.output_tail.strip():
        return
    tail = result.output_tail.rstrip().splitlines()[-lines:]
    out.print(f"  output of the cell (last {len(tail)} lines; all of it in {visible(result.log_path)}):", markup=False)
    for line in tail:
        out.print(f"  | {visible(line, keep_newlines=True)}", markup=False, soft_wrap=True)


def make_progress(out: Console) -> PlainProgress | LiveProgress:
    return LiveProgress(out) if out.is_terminal and sys.stderr.isatty() else PlainProgress(out)


def pivot_rows(results: Sequence[CellResult]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Environment -> (metric names, rows of [algorithm, "mean ± sd (n)" per metric]) over the ok cells."""

    grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (algorithm, environment, name), sample in metric_values_by_case(results).items():
        grouped.setdefault(environment, {}).setdefault(algorithm, {})[name] = sample
    tables = {}
    for environment, by_algorithm in grouped.items():
        metrics = sorted({name for values in by_algorithm.values() for name in values})
        rows = []
        for algorithm, values in sorted(by_algorithm.items()):
            row = [algorithm]
            for name in metrics:
                sample = values.get(name, [])
                if not sample:
                    row.append("")
                elif len(sample) == 1:
                    row.append(f"{sample[0]:.4g} (n=1)")
                else:
                    row.append(f"{overflow_safe_mean(sample):.4g} ± {_stdev(sample):.2g} (n={len(sample)})")
            rows.append(row)
        tables[environment] = (metrics, rows)
    return tables


def _stdev(sample: list[float]) -> float:
    """The sample standard deviation; values near the float limit (1.7e308) are scaled so that it stays finite
    where ``statistics.stdev`` would overflow."""
    import statistics

    scale = max(abs(v) for v in sample) or 1.0
    return statistics.stdev([v / scale for v in sample]) * scale


def print_summary(summary: Any) -> None:
    """The run's results as a pivot table per environment (algorithm x metric, mean ± sd over seeds), then
    the cells that failed or were skipped, with their reasons."""
    counts = summary.counts
    out = console()
    for environment, (metrics, rows) in pivot_rows(summary.results).items():
        print_table(f"{summary.suite} ({summary.profile}): {environment}", ["algorithm", *metrics], rows)
    problems = [r for r in summary.results if r.status != "ok"]
    if problems:
        print_table("not ok", ["cell", "status", "reason"], [[r.cell.label, r.status, r.error or ""] for r in problems])
    for item in getattr(summary, "stability", []):
        for warning in item["warnings"]:
            out.print(
                f"[yellow]unstable:[/] {markup(item['algorithm'])}/{markup(item['environment'])} "
                f"{markup(item['metric'])}: {markup(warning)}"
            )
    out.print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"
        + (f", {summary.already_finished} already finished" if summary.already_finished else "")
    )
    if summary.parent_run_id:
        out.print(f"MLflow: {markup(summary.tracking_uri)} (parent run {markup(summary.parent_run_id)})")
        if summary.tracking_uri and summary.tracking_uri.startswith("sqlite"):
            out.print(f"open with: mlflow ui --backend-store-uri {markup(summary.tracking_uri)}")
    out.print(f"journal: {markup(summary.journal_path)}")
