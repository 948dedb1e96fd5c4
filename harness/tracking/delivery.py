"""Delivering journaled records to one MLflow store: each record once per store, under a parent that exists there.

A :class:`Delivery` serves one suite-run configuration in one store. It opens (or creates) the configuration's
parent run in that store, delivers what the journal holds that the store has not received under that parent,
marks attempts replaced by later ones of the same cell as superseded, and closes the parent with counts and
aggregates of the latest attempts. ``harness run`` uses one for its own configuration (live results through
:class:`BackgroundLogger`); ``harness sync`` one per configuration in each journal.

A record the store refuses (:class:`harness.tracking.store.RecordRefused`) is marked refused for that store and
skipped; any other error means the store is unreachable and stops the delivery, leaving the rest in the journal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from harness.errors import TrackingError
from harness.record import CellResult, SuiteRunRecord
from harness.tracking.journal import Journal, JournalState
from harness.tracking.layout import run_tags
from harness.tracking.store import MlflowTracker, RecordRefused


class Delivery:
    def __init__(
        self,
        tracker: MlflowTracker,
        journal: Journal,
        state: JournalState,
        run: SuiteRunRecord,
        notify: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.tracker = tracker
        self.journal = journal
        self.state = state
        self.run = run
        self.notify = notify
        self.store = tracker.store
        self.base_tags = run_tags(run)
        self.parent_run_id: str | None = None
        self.delivered: dict[str, str] = {}  # record id -> run id under this parent
        self.refused: dict[str, str] = {}
        self._order: dict[str, int] = {}  # record id -> position (journal order: later attempts are newer)
        self._results: dict[str, CellResult] = {}
        self._newest: dict[str, str] = {}  # cell key -> record id of its newest attempt
        self._attempts: dict[str, list[str]] = {}  # cell key -> record ids of its attempts, oldest first
        for result in state.results_of(run):
            self._remember(result)

    def _remember(self, result: CellResult) -> None:
        if result.record_id not in self._order:
            self._order[result.record_id] = len(self._order)
            self._results[result.record_id] = result
            self._newest[result.cell.key] = result.record_id
            self._attempts.setdefault(result.cell.key, []).append(result.record_id)

    def open_parent(self) -> str:
        """The configuration's parent in this store: reopened if the journal knows a live one, else created.

        A parent the journal recorded under another store key (a journal written before stores had ids, or
        a copy of the store) is this store's if its run id is found here: MLflow's run ids are random, so it
        is recognised and recorded under the store's id instead of a second parent being started."""
        config = self.run.config_id
        parent = self.state.parents.get((self.store, config))
        if parent is None or not self.tracker.parent_exists(parent):
            parent = next(
                (
                    candidate
                    for (store, known_config), candidate in reversed(self.state.parents.items())
                    if known_config == config and store != self.store and self.tracker.parent_exists(candidate)
                ),
                None,
            )
            if parent is not None:
                self._record_parent(parent)
        if parent is not None:
            self.tracker.reopen_parent(parent, self.run.suite_info or None)
        else:
            parent = self.tracker.start_parent(self.run)
            self._record_parent(parent)
        self.parent_run_id = parent
        # A parent's run id names one store, so deliveries under it count whatever store key recorded them.
        for (_, known_parent), delivered in self.state.deliveries.items():
            if known_parent == parent:
                self.delivered.update(delivered)
        for (_, known_parent), refused in self.state.refused.items():
            if known_parent == parent:
                self.refused.update(refused)
        return parent

    def _record_parent(self, parent: str) -> None:
        self.journal.append_parent(parent, self.store, self.run.config_id, self.tracker.tracking_uri)
        self.state.parents[(self.store, self.run.config_id)] = parent
        self.state.note_store(self.tracker.tracking_uri, self.store)

    def pending(self) -> list[CellResult]:
        return [r for rid, r in self._results.items() if rid not in self.delivered and rid not in self.refused]

    def deliver_pending(self) -> int:
        """Deliver what the journal holds for this configuration and the store lacks; the number logged."""
        pending = self.pending()
        if not pending:
            return 0
        assert self.parent_run_id is not None, "open_parent() first"
        already = self.tracker.logged_record_ids(self.run.suite, self.parent_run_id)
        logged = 0
        for result in pending:
            logged += self.deliver(result, already)
        return logged

    def _superseded(self, result: CellResult) -> bool:
        return self._newest[result.cell.key] != result.record_id

    def deliver(self, result: CellResult, already: dict[str, str] | None = None) -> int:
        """Deliver one result (a new one is taken as the newest attempt of its cell); 1 if it was logged now."""
        assert self.parent_run_id is not None, "open_parent() first"
        self._remember(result)
        run_id = (already or {}).get(result.record_id)
        logged = 0
        if run_id is None:
            try:
                run_id = self.tracker.log_cell(
                    result,
                    self.parent_run_id,
                    self.base_tags,
                    superseded=self._superseded(result),
                    sequence=self._order[result.record_id],
                )
            except RecordRefused as exc:
                self.refused[result.record_id] = str(exc)
                self.journal.mark_refused(result.record_id, self.store, self.parent_run_id, str(exc))
                self.notify(f"MLflow at {self.tracker.tracking_uri} refused a result: {exc}")
                return 0
            logged = 1
        if not self._superseded(result):
            older = [
                self.delivered[rid]
                for rid in self._attempts[result.cell.key]
                if rid != result.record_id and rid in self.delivered
            ]
            self.tracker.mark_superseded(older)
        self.delivered[result.record_id] = run_id
        self.journal.mark_synced(result.record_id, run_id, self.store, self.parent_run_id)
        return logged

    def latest_results(self) -> list[CellResult]:
        return [self._results[rid] for rid in self._newest.values()]

    def finish(self) -> None:
        assert self.parent_run_id is not None
        refused = sum(1 for r in self.latest_results() if r.record_id in self.refused)
        expected = len(self.run.cell_keys) or None  # a version-1 run record names no cells
        self.tracker.finish_parent(self.parent_run_id, self.latest_results(), refused=refused, expected=expected)
        self.journal.mark_closed(self.store, self.parent_run_id)
        self.state.closed.add((self.store, self.parent_run_id))

    def summary(self) -> dict[str, Any]:
        return {"store": self.store, "parent_run_id": self.parent_run_id, "refused": len(self.refused)}


class BackgroundLogger:
    """Delivers results on a thread, in completion order, through a :class:`harness.tracking.delivery.Delivery`.

    A refused record is marked and skipped by the delivery. After a failure that retries cannot fix (server
    down), it stops trying; the results stay in the journal for ``harness sync`` and :attr:`error` says what
    happened.
    """

    def __init__(self, delivery: Any) -> None:
        self.delivery = delivery
        self.error: BaseException | None = None
        self.delivered = 0
        self.undelivered: list[CellResult] = []
        self._queue: queue.Queue[CellResult | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="harness-mlflow", daemon=True)
        self._thread.start()

    def submit(self, result: CellResult) -> None:
        self._queue.put(result)

    def _loop(self) -> None:
        while True:
            result = self._queue.get()
            if result is None:
                return
            if self.error is not None:
                self.undelivered.append(result)
                continue
            try:
                self.delivered += self.delivery.deliver(result)
            except Exception as exc:
                uri = self.delivery.tracker.tracking_uri
                self.error = TrackingError(f"MLflow at {uri}: {type(exc).__name__}: {exc}")
                self.undelivered.append(result)

    def close(self) -> None:
        """Wait until everything submitted has been logged (or given up on)."""
        self._queue.put(None)
        self._thread.join()
