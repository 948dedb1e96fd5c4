"""The local journal: every result is appended here before anything goes to MLflow.

One JSON-lines file per suite and profile under ``results/journal/``. Lines are events:

* ``{"type": "run", ...}``: a suite run started (suite, profile, tracking URI, machine).
* ``{"type": "parent", "run_id": ...}``: the MLflow parent run that holds this journal's cells.
* ``{"type": "result", "record": {...}}``: one cell's :class:`CellResult`.
* ``{"type": "synced", "record_id": ..., "run_id": ...}``: that result is in MLflow as run ``run_id``.

A run killed at any point leaves at most a truncated last line, which is ignored on reading. Results without a
``synced`` line are delivered by the next run of the same suite and profile or by ``harness sync``; MLflow is
searched by record id first, so a result logged just before a kill is never logged twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.tracking.record import CellResult


@dataclass
class JournalState:
    """What a journal file says, folded over its lines."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    parent_run_id: str | None = None
    results: dict[str, CellResult] = field(default_factory=dict)  # record id -> result
    synced: dict[str, str] = field(default_factory=dict)  # record id -> MLflow run id
    unreadable_lines: int = 0

    def finished_keys(self) -> set[str]:
        """Cell keys with a successful result: skipped on resume."""
        return {r.cell.key for r in self.results.values() if r.status == "ok"}

    def unsynced(self) -> list[CellResult]:
        return [r for rid, r in self.results.items() if rid not in self.synced]

    @property
    def tracking_uri(self) -> str | None:
        return self.runs[-1].get("tracking_uri") if self.runs else None


class Journal:
    """Append-only, fsynced, safe to write from the result loop and the tracking thread at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None

    @classmethod
    def for_suite(cls, results_dir: Path, suite: str, profile: str) -> Journal:
        return cls(results_dir / "journal" / f"{suite}--{profile}.jsonl")

    def read(self) -> JournalState:
        state = JournalState()
        if not self.path.exists():
            return state
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    state.unreadable_lines += 1  # a line cut short by a kill: its result was never confirmed
                    continue
                kind = event.get("type")
                if kind == "run":
                    state.runs.append(event)
                elif kind == "parent":
                    state.parent_run_id = event["run_id"]
                elif kind == "result":
                    result = CellResult.from_dict(event["record"])
                    state.results[result.record_id] = result
                elif kind == "synced":
                    state.synced[event["record_id"]] = event["run_id"]
        return state

    def archive(self) -> Path | None:
        """Move the current journal aside (``--no-resume``); archived journals can still be synced."""
        if not self.path.exists():
            return None
        target = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{counter}.jsonl")
            counter += 1
        self.path.rename(target)
        return target

    def append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line)
            # flush() hands the line to the kernel: it survives kill -9 of this process. fsync (power loss)
            # costs milliseconds per result on common disks, so it happens once, at close().
            self._file.flush()

    def append_result(self, result: CellResult) -> None:
        self.append({"type": "result", "record": result.to_dict()})

    def mark_synced(self, record_id: str, run_id: str) -> None:
        self.append({"type": "synced", "record_id": record_id, "run_id": run_id})

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the journal's lock file for a whole run: two runs of one suite and profile would interleave."""
        lock_path = self.path.with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise BadInput(
                    f"{self.path} is in use by {owner}: another harness run of this suite and profile is "
                    "running. Wait for it, or use --results-dir to run separately."
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"harness pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def all_journals(results_dir: Path) -> list[Journal]:
    return [Journal(path) for path in sorted((results_dir / "journal").glob("*.jsonl"))]
