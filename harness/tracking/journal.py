"""The local journal: every result is appended here, and fsynced, before anything goes to MLflow.

One JSON-lines file per suite and profile under ``results/journal/``. Lines are events:

* ``{"type": "run", "record": {...}}``: a suite run started (:class:`SuiteRunRecord`: configuration, cell
  keys, tracking URI, machine, git state).
* ``{"type": "parent", "run_id", "store", "config_id", "uri"}``: the MLflow parent run that holds the cells of
  one configuration in one store. ``store`` is the id the store holds (``mlflow-store:<uuid>``, see
  :attr:`harness.tracking.store.MlflowTracker.store`; earlier journals hold the URI's spelling), ``uri`` the
  spelling it was reached by, so ``sync`` can tell without connecting that nothing is left for that URI.
* ``{"type": "result", "record": {...}}``: one cell attempt's :class:`CellResult`. Written with ``fsync``
  before :meth:`Journal.append_result` returns, so a finished result survives a kill and a power loss.
* ``{"type": "synced", "record_id", "run_id", "store", "parent"}``: that result is in that store, under that
  parent, as run ``run_id``.
* ``{"type": "refused", "record_id", "store", "parent", "reason"}``: that store refused the record (a name it
  does not accept); it is not retried there, and it never holds back the others.

A run killed at any point leaves at most a truncated last line, which is ignored on reading. Deliveries are
tracked per store and parent: a result reaches every store it is sent to once, and MLflow is searched by
record id before delivering, so a result logged just before a kill is never logged twice. Journals of
schema version 1 (no stores or configurations in their events) are read as one configuration sent to the
store their last run named.
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
from harness.record import CellResult, SuiteRunRecord, latest_attempts

#: Events whose loss would lose a result: fsynced before ``append`` returns. Delivery marks are only
#: flushed (a lost mark costs a search in the store, never a duplicate).
DURABLE_EVENTS = frozenset({"run", "result"})


def _store(uri: str | None) -> str:
    from harness.tracking.uri import store_identity

    return store_identity(uri) if uri else ""


@dataclass
class JournalState:
    """What a journal file says, folded over its lines."""

    runs: list[SuiteRunRecord] = field(default_factory=list)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # (store, config id) -> parent run id
    results: dict[str, CellResult] = field(default_factory=dict)  # record id -> result, in journal order
    deliveries: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (store, parent) -> rid -> run
    refused: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (store, parent) -> rid -> why
    store_ids: dict[str, set[str]] = field(default_factory=dict)  # URI spelling -> ids of stores reached by it
    unreadable_lines: int = 0

    def note_store(self, uri: str, store: str) -> None:
        self.store_ids.setdefault(_store(uri), set()).add(store)

    def stores_at(self, uri: str) -> set[str]:
        """The store keys this journal knows for ``uri``: the ids of stores it reached by that spelling, and
        the spelling itself (journals written before stores had ids)."""
        spelling = _store(uri)
        return {spelling, *self.store_ids.get(spelling, set())}

    def latest(self) -> dict[str, CellResult]:
        """Cell key -> its latest attempt (the result; earlier attempts are superseded), in journal order."""
        return latest_attempts(self.results.values(), key=lambda result: result.cell.key)

    def finished_keys(self) -> set[str]:
        """Cell keys whose latest attempt succeeded: skipped on resume."""
        return {key for key, result in self.latest().items() if result.status == "ok"}

    def configurations(self) -> list[SuiteRunRecord]:
        """The last run record of each configuration, in the order configurations first appeared."""
        found: dict[str, SuiteRunRecord] = {}
        for run in self.runs:
            found[run.config_id] = run
        return list(found.values())

    def results_of(self, run: SuiteRunRecord) -> list[CellResult]:
        """Every attempt of the cells of ``run``'s configuration (all results for a version-1 journal)."""
        if not run.cell_keys:
            return list(self.results.values())
        keys = set(run.cell_keys)
        return [result for result in self.results.values() if result.cell.key in keys]

    def pending(self, store: str, parent: str, run: SuiteRunRecord) -> list[CellResult]:
        """Results of ``run``'s configuration that ``store`` has neither received under ``parent`` nor refused.

        A parent's run id names one store, so marks under it count whichever key of that store (its id, or the
        URI spelling of an older journal) recorded them."""
        done = {rid for (_, known), marks in self.deliveries.items() if known == parent for rid in marks}
        refused = {rid for (_, known), marks in self.refused.items() if known == parent for rid in marks}
        return [r for r in self.results_of(run) if r.record_id not in done and r.record_id not in refused]

    @property
    def tracking_uri(self) -> str | None:
        return self.runs[-1].tracking_uri if self.runs else None


class Journal:
    """Append-only and fsynced; safe to write from the result loop and the tracking thread at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None

    @classmethod
    def for_suite(cls, results_dir: Path, suite: str, profile: str, source: str = "suite run") -> Journal:
        from harness.paths import path_for

        return cls(path_for(results_dir / "journal", "{suite}--{profile}.jsonl", source, suite=suite, profile=profile))

    def read(self) -> JournalState:
        state = JournalState()
        if not self.path.exists():
            return state
        # Version-1 events name no store or configuration: they belong to the latest run's store and parent.
        current_store, current_parent = "", ""
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    state.unreadable_lines += 1  # a line cut short by a kill: its result was never confirmed
                    continue
                kind = event.get("type")
                if kind == "run":
                    run = SuiteRunRecord.from_dict(event.get("record", event))
                    state.runs.append(run)
                    current_store = _store(run.tracking_uri)
                elif kind == "parent":
                    store = event.get("store", current_store)
                    config = event.get("config_id", "v1")
                    state.parents[(store, config)] = event["run_id"]
                    if event.get("uri"):
                        state.note_store(event["uri"], store)
                    current_store, current_parent = store, event["run_id"]
                elif kind == "result":
                    result = CellResult.from_dict(event["record"])
                    state.results[result.record_id] = result
                elif kind == "synced":
                    where = (event.get("store", current_store), event.get("parent", current_parent))
                    state.deliveries.setdefault(where, {})[event["record_id"]] = event["run_id"]
                elif kind == "refused":
                    where = (event["store"], event["parent"])
                    state.refused.setdefault(where, {})[event["record_id"]] = event.get("reason", "")
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
            self._file.flush()  # in the kernel: survives kill -9 of this process
            if event.get("type") in DURABLE_EVENTS:
                # On the disk: survives a power loss. About 0.1 ms on this project's machines (RESULTS.md).
                os.fsync(self._file.fileno())

    def append_run(self, run: SuiteRunRecord) -> None:
        self.append({"type": "run", "record": run.to_dict()})

    def append_parent(self, run_id: str, store: str, config_id: str, uri: str = "") -> None:
        event = {"type": "parent", "run_id": run_id, "store": store, "config_id": config_id}
        if uri:
            event["uri"] = uri
        self.append(event)

    def append_result(self, result: CellResult) -> None:
        self.append({"type": "result", "record": result.to_dict()})

    def mark_synced(self, record_id: str, run_id: str, store: str, parent: str) -> None:
        self.append({"type": "synced", "record_id": record_id, "run_id": run_id, "store": store, "parent": parent})

    def mark_refused(self, record_id: str, store: str, parent: str, reason: str) -> None:
        self.append({"type": "refused", "record_id": record_id, "store": store, "parent": parent, "reason": reason})

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

