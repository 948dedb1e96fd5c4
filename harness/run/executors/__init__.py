"""Executors run cells and yield their results as they finish; the driver does everything else.

An executor is any object with ``run(cells) -> Iterator[CellResult]`` and ``close()``. Each result comes back
exactly once per cell, whatever happened to the worker (raised, timed out, crashed).
"""

from __future__ import annotations

import signal
import time
import uuid

from harness.run.worker import worker_name
from harness.tracking.record import Cell, CellResult


def failed_result(cell: Cell, reason: str, error_type: str, started: float | None = None) -> CellResult:
    """A result for a cell whose worker could not report one itself (timeout, crash, lost node)."""
    now = time.time()
    return CellResult(
        cell=cell,
        status="failed",
        error=reason,
        error_type=error_type,
        started_at=started or now,
        finished_at=now,
        worker=worker_name(),
        record_id=uuid.uuid4().hex,
    )


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
