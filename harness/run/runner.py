"""Running a suite: expand, skip what is finished, execute, journal, track.

The driver's loop is deliberately thin: an executor yields results as cells finish; each result is appended
to the journal (fsynced) and handed to the MLflow logging thread and to the lifecycle hooks. Whatever happens
to the tracking server, the journal holds every finished result, and the next run or ``harness sync``
delivers what MLflow did not get, exactly once.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import BadInput, ResultsFolderError, TrackingError
from harness.machine import code_under_test, git_commit_time, machine_info
from harness.plugins import PluginOptions, PluginRegistry
from harness.record import (
    DEVICES,
    Cell,
    CellResult,
    RunInfo,
    SuiteRunRecord,
    WorkerOptions,
    metric_values_by_case,
    status_counts,
)
from harness.run import DEFAULT_MAX_CELLS
from harness.run.expansion import metric_declarations
from harness.run.selection import select_cells
from harness.run.suite import Suite
from harness.tracking.journal import Journal, JournalState, all_journals


class Executor(Protocol):
    def run(self, cells: Sequence[Cell]) -> Any: ...
    def close(self, cancel: bool = False) -> None: ...


class Progress(Protocol):
    """The run display. ``cell_progress`` gets running cells' events (``key``, ``done``, ``total``, ``note``)
    from an executor thread; ``advance`` a finished cell's result from the driver loop."""

    def start(self, total: int, already_done: int, cells: Sequence[Cell] = ()) -> None: ...
    def advance(self, result: CellResult) -> None: ...
    def cell_progress(self, event: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, total: int, already_done: int, cells: Sequence[Cell] = ()) -> None:
        pass

    def advance(self, result: CellResult) -> None:
        pass

    def cell_progress(self, event: dict[str, Any]) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class RunOptions:
    profile: str | None = None
    jobs: int = 1
    tracking_uri: str | None = None  # None: no tracking at all (journal only)
    results_dir: Path = field(default_factory=lambda: Path("results"))
    resume: bool = True
    overrides: Sequence[str] = ()
    executor: str = "local"
    ray_address: str | None = None
    max_retries: int = 2
    device: str = "auto"  # where cells that can use a GPU run: auto (a GPU if visible), cpu, cuda
    max_cells: int = DEFAULT_MAX_CELLS
    only: Sequence[str] = ()  # --only expressions: run the matching cells (part of the run's record)
    show_output: bool = False  # cells' output on the terminal instead of only in their logs
    repository: Path | None = None  # the code under test (--repo); None: the suite's, else found (see machine)
    purpose: str = ""  # "calibration" for harness calibrate's repeats (SuiteRunRecord.purpose)

    @property
    def worker_options(self) -> WorkerOptions:
        """How the workers execute this run's cells (not part of any cell's identity)."""
        return WorkerOptions(device=self.device, fresh_start=not self.resume, show_output=self.show_output)


@dataclass
class RunSummary:
    suite: str
    profile: str
    results: list[CellResult]
    already_finished: int
    parent_run_id: str | None
    tracking_uri: str | None
    journal_path: Path
    tracking_error: str | None = None
    undelivered: int = 0
    refused: int = 0
    config_id: str = ""
    #: Metric name -> unit (from the suite's declarations), for the stability checks.
    metric_units: dict[str, str] = field(default_factory=dict)

    @property
    def stability(self) -> list[dict[str, Any]]:
        """pyperf-style warnings per (algorithm, environment, metric) over this run's ok cells (seeds)."""
        from harness.analysis.stability import stability_warnings

        found = []
        for (algorithm, environment, metric), values in sorted(metric_values_by_case(self.results).items()):
            warnings = stability_warnings(values, self.metric_units.get(metric, ""))
            if warnings:
                found.append(
                    {"algorithm": algorithm, "environment": environment, "metric": metric, "warnings": warnings}
                )
        return found

    @property
    def counts(self) -> dict[str, int]:
        return status_counts(result.status for result in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.counts["failed"] else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "profile": self.profile,
            "counts": self.counts,
            "already_finished": self.already_finished,
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking_uri,
            "journal": str(self.journal_path),
            "tracking_error": self.tracking_error,
            "undelivered": self.undelivered,
            "refused": self.refused,
            "config_id": self.config_id,
            "stability": self.stability,
            "cells": [
                {
                    "key": r.cell.key,
                    "label": r.cell.label,
                    "status": r.status,
                    "device": r.device,
                    "metrics": r.metrics,
                    "error": r.error,
                    "duration_s": round(r.duration_s, 4),
                    "shared_setup_s": round(r.shared_setup_s, 4),
                }
                for r in self.results
            ],
        }


def make_executor(options: RunOptions, plugin_options: PluginOptions) -> Executor:
    worker_options = options.worker_options
    if options.executor == "local":
        from harness.run.executors.local import LocalExecutor

        return LocalExecutor(options.jobs, plugin_options, options.results_dir, worker_options)
    if options.executor == "ray":
        try:
            from harness.run.executors.ray import RayExecutor
        except ImportError as exc:
            raise BadInput(f"--executor ray needs Ray: pip install 'harness[ray]' ({exc})") from None
        return RayExecutor(
            options.ray_address, plugin_options, options.results_dir, options.max_retries, worker_options
        )
    raise BadInput(f"unknown executor {options.executor!r}; use 'local' or 'ray'")


def _call_observers(hook: Callable[..., Any], **kwargs: Any) -> None:
    """Lifecycle hooks observe; a broken observer is reported, never allowed to stop the run."""
    try:
        hook(**kwargs)
    except Exception as exc:
        from harness.untrusted import visible

        name = getattr(hook, "name", repr(hook))
        # Printed on the terminal by the warnings module: the plugin's text with its control characters visible.
        warnings.warn(visible(f"a plugin's {name} hook failed: {type(exc).__name__}: {exc}"), stacklevel=2)


def _suite_info(suite: Suite, profile: str, registry: PluginRegistry, cells: list[Cell]) -> dict[str, Any]:
    metric_names = sorted({name for cell in cells for name in cell.metrics})
    return {
        "suite": suite.name,
        "profile": profile,
        "description": suite.model.description,
        "suite_file": str(suite.path),
        "metrics": {
            name: declaration.to_dict()
            for name, declaration in metric_declarations(suite, registry, metric_names).items()
        },
        "thresholds": dict(suite.model.thresholds),
        "report": suite.model.report.model_dump(mode="json"),
        "renames": {kind: found for kind, found in suite.renames().items() if found},
        "cells": len(cells),
        "plugins": {
            record.distribution or record.name: record.version or "0"
            for record in registry.plugins.values()
            if record.status.startswith("loaded")
        },
    }


def check_labels(suite: Suite, cells: list[Cell], state: JournalState, journal_path: Path) -> None:
    """Refuse labels that changed for cells the journal already holds, unless the suite declares the rename
    (``renamed_from``): undeclared, the report would show the old results under the old label and the new ones
    under the new label, one algorithm as two rows."""
    renames = suite.renames()
    latest = state.latest()
    changed: set[str] = set()
    for cell in cells:
        old = latest.get(cell.key)
        if old is None:
            continue
        for kind, before, now in (
            ("algorithm", old.cell.algorithm_label, cell.algorithm_label),
            ("environment", old.cell.environment_label, cell.environment_label),
        ):
            if before and before != now and renames[kind].get(before) != now:
                changed.add(f"{kind} {before!r} is now {now!r}")
    if changed:
        listed = sorted(changed)
        more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
        raise BadInput(
            f"{suite.path}: labels changed for cells {journal_path} already holds: {'; '.join(listed[:10])}{more}. "
            'If these are renames, declare them on the entries (renamed_from = "old label", docs/suites.md '
            '"Renaming a label") so reports and comparisons show old and new results as one row; to start over '
            "under the new labels instead, run with --no-resume."
        )


def _open_delivery(
    options: RunOptions, journal: Journal, state: JournalState, run: SuiteRunRecord, notify: Callable[[str], None]
) -> tuple[Any, str | None]:
    """The delivery of this run's configuration to ``options.tracking_uri``, with what the journal holds and
    the store lacks already delivered; ``(None, reason)`` when the store cannot be reached."""
    if not options.tracking_uri:
        return None, None
    try:
        from harness.tracking.delivery import Delivery
        from harness.tracking.store import MlflowTracker

        delivery = Delivery(MlflowTracker(options.tracking_uri), journal, state, run, notify)
        delivery.open_parent()
        delivered = delivery.deliver_pending()
        if delivered:
            notify(f"delivered {delivered} result(s) from the journal to MLflow at {options.tracking_uri}")
        return delivery, None
    except Exception as exc:
        reason = f"MLflow at {options.tracking_uri}: {type(exc).__name__}: {exc}"
        notify(f"tracking unavailable ({reason}); results go to {journal.path} only")
        return None, reason


def run_suite(
    suite: Suite,
    registry: PluginRegistry,
    options: RunOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Run ``suite`` with ``options``; bad input raises :class:`BadInput` before anything runs.

    What a rerun does to results (docs/suites.md, "Reruns, resumes, stores and code changes"):

    * resume (the default): a cell whose latest attempt in the journal succeeded is skipped; an interrupted
      attempt continues from its checkpoint;
    * ``resume=False`` (``--no-resume``, every nightly and calibrate repeat): every cell runs from scratch, and
      no checkpoint of an earlier attempt is reused;
    * a new store: cells the journal holds are delivered to it from the journal, under a new parent;
    * a different configuration (``--set``): a new parent run; cells it shares with the old one are reused;
    * changed code: the cell key holds the code version, so the cell is a new cell and runs.
    """
    progress = progress or NoProgress()
    profile, cells = suite.expand(registry, options.profile, options.overrides, max_cells=options.max_cells)
    cells = select_cells(cells, options.only, str(suite.path))
    if options.device not in DEVICES:
        raise BadInput(f"device must be one of {', '.join(DEVICES)}, got {options.device!r}")
    if not cells:
        raise BadInput(f"{suite.path}: profile {profile!r} expands to no cells")
    options.results_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal.for_suite(options.results_dir, suite.name, profile)
    with journal.exclusive():
        if not options.resume:
            archived = journal.archive()
            if archived:
                notify(f"previous journal kept as {archived}")
        state = journal.read()
        check_labels(suite, cells, state, journal.path)
        finished = state.finished_keys() if options.resume else set()
        todo = [cell for cell in cells if cell.key not in finished]
        machine = machine_info()
        repository, commit, dirty = code_under_test(options.repository, suite.repository, suite.path.parent)
        keys = [cell.key for cell in cells]
        run_record = SuiteRunRecord(
            suite=suite.name,
            profile=profile,
            config_id=SuiteRunRecord.compute_config_id(suite.name, profile, keys),
            cell_keys=keys,
            tracking_uri=options.tracking_uri,
            overrides=list(options.overrides),
            selection=list(options.only),
            machine=machine,
            git_commit=commit,
            git_dirty=dirty,
            git_commit_time=git_commit_time(repository, commit),
            suite_info=_suite_info(suite, profile, registry, cells),
            started_at=time.time(),
            purpose=options.purpose,
        )
        journal.append_run(run_record)
        state.runs.append(run_record)
        delivery, tracking_error = _open_delivery(options, journal, state, run_record, notify)
        parent_run_id = delivery.parent_run_id if delivery is not None else None
        run_info = RunInfo(
            suite=suite.name,
            profile=profile,
            cells=cells,
            tracking_uri=options.tracking_uri,
            parent_run_id=parent_run_id,
            journal_path=str(journal.path),
            machine=machine,
            resumed_keys=finished,
        )
        logger = None
        if delivery is not None:
            from harness.tracking.delivery import BackgroundLogger

            logger = BackgroundLogger(delivery)
        _call_observers(registry.hook.harness_run_started, run=run_info)
        results: list[CellResult] = []
        progress.start(len(cells), len(cells) - len(todo), todo)
        executor = make_executor(options, registry.options) if todo else None
        if executor is not None and hasattr(executor, "on_progress"):
            executor.on_progress = getattr(progress, "cell_progress", None)
        try:
            for result in executor.run(todo) if executor else ():
                result.config_id = run_record.config_id
                journal.append_result(result)
                results.append(result)
                if logger is not None:
                    logger.submit(result)
                progress.advance(result)
                _call_observers(registry.hook.harness_cell_finished, run=run_info, result=result)
        except BaseException:
            if executor is not None:
                executor.close(cancel=True)
                executor = None
            raise
        finally:
            if executor is not None:
                executor.close()
            progress.stop()
            if logger is not None:
                logger.close()
        undelivered = 0
        if logger is not None and logger.error is not None:
            tracking_error = str(logger.error)
            undelivered = len(logger.undelivered)
        elif delivery is None and options.tracking_uri:
            undelivered = len(results)
        refused = len(delivery.refused) if delivery is not None else 0
        if delivery is not None and tracking_error is None:
            try:
                delivery.finish()
            except Exception as exc:
                tracking_error = f"MLflow at {options.tracking_uri}: {type(exc).__name__}: {exc}"
        journal.close()
        _call_observers(registry.hook.harness_run_finished, run=run_info, results=results)
    return RunSummary(
        suite=suite.name,
        profile=profile,
        results=results,
        already_finished=len(cells) - len(todo),
        parent_run_id=parent_run_id,
        tracking_uri=options.tracking_uri,
        journal_path=journal.path,
        tracking_error=tracking_error,
        undelivered=undelivered,
        refused=refused,
        config_id=run_record.config_id,
        metric_units={name: str(info.get("unit", "")) for name, info in run_record.suite_info["metrics"].items()},
    )


@dataclass
class SyncReport:
    journal: str
    delivered: int
    already_present: int
    parent_run_id: str | None
    error: str | None = None
    store: str = ""
    refused: int = 0
    tracking_uri: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def sync_journals(results_dir: Path, tracking_uri: str | None) -> list[SyncReport]:
    """Deliver every journaled result the store does not have yet, each configuration under its own parent in
    that store (created there if needed); safe to run any number of times, against any number of stores.
    A report with an ``error`` names what could not be delivered; the other journals are synced all the same."""
    from harness.tracking.store import MlflowTracker

    reports = []
    trackers: dict[str, MlflowTracker] = {}  # one per URI: the store's id is read once
    for journal in all_journals(results_dir):
        try:
            reports.extend(_sync_journal(journal, tracking_uri, results_dir, trackers))
        except ResultsFolderError as exc:
            reports.append(SyncReport(str(journal.path), 0, 0, None, str(exc)))
        except Exception as exc:  # one journal's problem never keeps the others from their stores
            reports.append(SyncReport(str(journal.path), 0, 0, None, f"{type(exc).__name__}: {exc}"))
    return reports


def _sync_journal(
    journal: Journal, tracking_uri: str | None, results_dir: Path, trackers: dict[str, Any]
) -> list[SyncReport]:
    from harness.tracking.delivery import Delivery
    from harness.tracking.store import MlflowTracker

    reports = []
    state = journal.read()
    undeliverable = _undeliverable(journal, state)
    if undeliverable:
        reports.append(SyncReport(str(journal.path), 0, 0, None, undeliverable))
    uri = tracking_uri or _journal_store(state, results_dir)
    if not uri:
        if state.results:
            reports.append(SyncReport(str(journal.path), 0, 0, None, "no tracking URI: pass --tracking-uri"))
        return reports
    # Without connecting: every configuration is complete, and its parent closed, in a store this journal
    # reached by this URI.
    if not any(_needs_sync(state, state.stores_at(uri), run) for run in state.configurations()):
        return reports
    store = uri
    try:
        with journal.exclusive():
            state = journal.read()
            if uri not in trackers:
                trackers[uri] = MlflowTracker(uri)
            tracker = trackers[uri]
            store = tracker.store
            for run in state.configurations():
                if not _needs_sync(state, {store}, run):
                    continue
                delivery = Delivery(tracker, journal, state, run)
                delivery.open_parent()
                pending, refused_before = len(delivery.pending()), len(delivery.refused)
                delivered = delivery.deliver_pending()
                refused_now = len(delivery.refused) - refused_before
                delivery.finish()
                reports.append(
                    SyncReport(
                        str(journal.path),
                        delivered,
                        pending - delivered - refused_now,
                        delivery.parent_run_id,
                        store=store,
                        refused=refused_now,
                        tracking_uri=uri,
                    )
                )
            journal.close()
    except (TrackingError, BadInput, ResultsFolderError) as exc:
        reports.append(SyncReport(str(journal.path), 0, 0, None, str(exc), store=store, tracking_uri=uri))
    except Exception as exc:
        reports.append(
            SyncReport(str(journal.path), 0, 0, None, f"{type(exc).__name__}: {exc}", store=store, tracking_uri=uri)
        )
    return reports


def _journal_store(state: JournalState, results_dir: Path) -> str | None:
    """The URI a journal's results go to: the one its last run used, except an embedded store that is gone
    from where it was while the results folder holds one: the folder was moved (``mv results elsewhere``),
    and its store with it. That it is the same store is then known from the id it holds, not assumed."""
    from harness.tracking.uri import default_tracking_uri, sqlite_path

    uri = state.tracking_uri
    database = sqlite_path(uri) if uri else None
    if database is not None and not database.exists():
        here = default_tracking_uri(results_dir)
        moved = sqlite_path(here)
        if moved is not None and moved.exists():
            return here
    return uri


def _undeliverable(journal: Journal, state: JournalState) -> str | None:
    """What ``sync`` cannot deliver from this journal (its report names the journal), said for the reader;
    None when it can deliver everything the journal holds."""
    problems = []
    lost = state.lost_results()
    if lost:
        lines = ", ".join(str(number) for number, _ in lost[:10])
        problems.append(
            f"{len(lost)} damaged line(s) held a cell's result (line {lines}); those results cannot be read: "
            "their cells run again on the next `harness run` of this suite and profile"
        )
    orphans = state.orphans()
    if orphans:
        labels = ", ".join(sorted({result.cell.label for result in orphans})[:10])
        problems.append(
            f"{len(orphans)} result(s) belong to no run record of this journal (the line recording their "
            f"configuration is missing or damaged), so no parent run can hold them: {labels}. Run that "
            "configuration again (`harness run` with the same options) to record and deliver them"
        )
    return "could not deliver: " + "; ".join(problems) if problems else None


def _needs_sync(state: JournalState, stores: set[str], run: SuiteRunRecord) -> bool:
    """Results to deliver, or a parent a kill left running (finished now, as incomplete if cells never ran)."""
    return _has_pending(state, stores, run) or state.unclosed(stores, run)


def _has_pending(state: JournalState, stores: set[str], run: SuiteRunRecord) -> bool:
    """Whether ``run``'s configuration has results that none of ``stores`` (keys of one store) holds complete
    under its parent there."""
    for store in stores:
        parent = state.parents.get((store, run.config_id))
        if parent is not None and not state.pending(store, parent, run):
            return False
    return bool(state.results_of(run))


def summary_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_dict(), indent=2, default=str)
