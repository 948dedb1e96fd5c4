"""Terminal output: rich tables and a live progress display on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.tracking.record import CellResult

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
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(value)) for value in row))
    console().print(table)


class PlainProgress:
    """One line per finished cell, for logs and CI (no terminal)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.total = self.done = self.failed = 0
        self.started = time.monotonic()

    def start(self, total: int, already_done: int) -> None:
        self.total, self.done = total, already_done
        self.started = time.monotonic()
        if already_done:
            self.out.print(f"resuming: {already_done} of {total} cells already finished", soft_wrap=True)

    def advance(self, result: CellResult) -> None:
        self.done += 1
        self.failed += result.status == "failed"
        detail = f" - {result.error}" if result.error else ""
        self.out.print(
            f"[{self.done}/{self.total}] {result.status:<7} {result.cell.label} ({result.duration_s:.2f}s){detail}",
            markup=False,
            soft_wrap=True,
        )
        print_output_tail(self.out, result)

    def stop(self) -> None:
        pass


class LiveProgress:
    """A rich progress bar: cells done, failed, elapsed and ETA."""

    def __init__(self, out: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.task: Any = None
        self.failed = 0

    def start(self, total: int, already_done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("cells", total=total, completed=already_done, failed=0)

    def advance(self, result: CellResult) -> None:
        self.failed += result.status == "failed"
        self.progress.update(self.task, advance=1, failed=self.failed)
        if result.status == "failed":
            self.progress.console.print(f"[red]failed[/] {escape(result.cell.label)}: {escape(result.error or '')}")
            print_output_tail(self.progress.console, result)

    def stop(self) -> None:
        self.progress.stop()


def print_output_tail(out: Console, result: CellResult, lines: int = 15) -> None:
    """The last lines a failed cell printed, and where the whole log is."""
    if result.status != "failed" or not result.output_tail.strip():
        return
    tail = result.output_tail.rstrip().splitlines()[-lines:]
    out.print(f"  output of the cell (last {len(tail)} lines; all of it in {result.log_path}):", markup=False)
    for line in tail:
        out.print(f"  | {line}", markup=False, soft_wrap=True)


def make_progress(out: Console) -> PlainProgress | LiveProgress:
    return LiveProgress(out) if out.is_terminal and sys.stderr.isatty() else PlainProgress(out)


def print_summary(summary: Any) -> None:
    counts = summary.counts
    out = console()
    rows = []
    for result in summary.results:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
        rows.append([result.cell.label, result.status, metrics or (result.error or "")])
    if rows:
        print_table(f"{summary.suite} ({summary.profile})", ["cell", "status", "metrics / reason"], rows)
    out.print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"
        + (f", {summary.already_finished} already finished" if summary.already_finished else "")
    )
    if summary.parent_run_id:
        out.print(f"MLflow: {summary.tracking_uri} (parent run {summary.parent_run_id})")
        if summary.tracking_uri and summary.tracking_uri.startswith("sqlite"):
            out.print(f"open with: mlflow ui --backend-store-uri {summary.tracking_uri}")
    out.print(f"journal: {summary.journal_path}")
