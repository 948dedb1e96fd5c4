"""Executors run cells and yield their results as they finish; the driver does everything else.

An executor is any object with ``run(cells) -> Iterator[CellResult]`` and ``close()``. Each result comes back
exactly once per cell, whatever happened to the worker (raised, timed out, crashed).
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

from harness.record import Cell, CellResult
from harness.run.worker import tail_of, worker_name


def failed_result(
    cell: Cell, reason: str, error_type: str, started: float | None = None, results_dir: str | Path | None = None
) -> CellResult:
    """A result for a cell whose worker could not report one itself (timeout, crash, lost node).

    With ``results_dir`` (a worker on this machine), the output the cell wrote before it died is attached:
    the newest log of the cell's key written since ``started`` (a segfault's last words are often there).
    """
    now = time.time()
    result = CellResult(
        cell=cell,
        status="failed",
        error=reason,
        error_type=error_type,
        started_at=started or now,
        finished_at=now,
        worker=worker_name(),
        record_id=uuid.uuid4().hex,
    )
    if results_dir is not None:
        logs = sorted(
            (p for p in (Path(results_dir) / "logs" / cell.key).glob("*.log") if p.stat().st_mtime >= (started or 0)),
            key=lambda p: p.stat().st_mtime,
        )
        if logs:
            result.log_path = str(logs[-1])
            result.output_tail = tail_of(logs[-1])
    return result


def describe_exit(exitcode: int | None) -> str:
    """'killed by SIGKILL (out of memory?)' rather than 'exit code -9'."""
    if exitcode is None:
        return "ended without an exit code"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer, or a kill -9)" if name == "SIGKILL" else ""
        hint = " (a crash in native code)" if name in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL") else hint
        return f"killed by {name}{hint}"
    return f"exited with code {exitcode}"
