"""Running a suite: expand, skip what is finished, execute, journal, track.

The driver's loop is deliberately thin: an executor yields results as cells finish; each result is appended
to the journal (fsynced) and handed to the MLflow logging thread and to the lifecycle hooks. Whatever happens
to the tracking server, the journal holds every finished result, and the next run or ``harness sync``
delivers what MLflow did not get, exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import BadInput, TrackingError
from harness.machine import git_state, machine_info
from harness.plugins import PluginOptions, PluginRegistry
from harness.run.suite import Suite, metric_thresholds
from harness.tracking.journal import Journal, JournalState, all_journals
from harness.tracking.record import DEVICES, Cell, CellResult, RunInfo


class Executor(Protocol):
    def run(self, cells: Sequence[Cell]) -> Any: ...
    def close(self, cancel: bool = False) -> None: ...


class Progress(Protocol):
    def start(self, total: int, already_done: int) -> None: ...
    def advance(self, result: CellResult) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, total: int, already_done: int) -> None:
        pass

    def advance(self, result: CellResult) -> None:
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

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(result.status for result in self.results)
        return {status: counts.get(status, 0) for status in ("ok", "failed", "skipped")}

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
            "cells": [
                {
                    "key": r.cell.key,
                    "label": r.cell.label,
                    "status": r.status,
                    "device": r.device,
                    "metrics": r.metrics,
                    "error": r.error,
                    "duration_s": round(r.duration_s, 4),
                }
                for r in self.results
            ],
        }


def make_executor(options: RunOptions, plugin_options: PluginOptions) -> Executor:
    if options.executor == "local":
        from harness.run.executors.local import LocalExecutor

        return LocalExecutor(options.jobs, plugin_options, options.results_dir)
    if options.executor == "ray":
        try:
            from harness.run.executors.ray import RayExecutor
        except ImportError as exc:
            raise BadInput(f"--executor ray needs Ray: pip install 'harness[ray]' ({exc})") from None
        return RayExecutor(options.ray_address, plugin_options, options.results_dir, options.max_retries)
    raise BadInput(f"unknown executor {options.executor!r}; use 'local' or 'ray'")


def _call_observers(hook: Callable[..., Any], **kwargs: Any) -> None:
    """Lifecycle hooks observe; a broken observer is reported, never allowed to stop the run."""
    try:
        hook(**kwargs)
    except Exception as exc:
        warnings.warn(f"a plugin's {hook.name} hook failed: {type(exc).__name__}: {exc}", stacklevel=2)


def _suite_info(suite: Suite, profile: str, registry: PluginRegistry, cells: list[Cell]) -> dict[str, Any]:
    metric_names = sorted({name for cell in cells for name in cell.metrics})
    return {
        "suite": suite.name,
        "profile": profile,
        "description": suite.model.description,
        "suite_file": str(suite.path),
        "metrics": metric_thresholds(suite, registry, metric_names),
        "thresholds": dict(suite.model.thresholds),
        "cells": len(cells),
        "plugins": {
            record.distribution or record.name: record.version or "0"
            for record in registry.plugins.values()
            if record.status.startswith("loaded")
        },
    }


def _deliver_pending(
    tracker: Any, journal: Journal, state: JournalState, parent_run_id: str, suite: str, base_tags: dict
) -> int:
    """Log the journal's unsynced results, skipping any that MLflow already has (a kill between log and mark)."""
    pending = state.unsynced()
    if not pending:
        return 0
    already = tracker.logged_record_ids(suite, parent_run_id)
    delivered = 0
    for result in pending:
        run_id = already.get(result.record_id)
        if run_id is None:
            run_id = tracker.log_cell(result, parent_run_id, base_tags)
            delivered += 1
        journal.mark_synced(result.record_id, run_id)
    return delivered


def run_suite(
    suite: Suite,
    registry: PluginRegistry,
    options: RunOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Run ``suite`` with ``options``; bad input raises :class:`BadInput` before anything runs."""
    progress = progress or NoProgress()
    profile, cells = suite.expand(registry, options.profile, options.overrides)
    if options.device not in DEVICES:
        raise BadInput(f"device must be one of {', '.join(DEVICES)}, got {options.device!r}")
    cells = [dataclasses.replace(cell, device=options.device) for cell in cells]
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
        finished = state.finished_keys() if options.resume else set()
        todo = [cell for cell in cells if cell.key not in finished]
        machine = machine_info()
        git = git_state(suite.path.parent)
        suite_info = _suite_info(suite, profile, registry, cells)
        journal.append(
            {
                "type": "run",
                "suite": suite.name,
                "profile": profile,
                "tracking_uri": options.tracking_uri,
                "machine": machine,
                "git_commit": git[0],
                "git_dirty": git[1],
                "suite_info": suite_info,
            }
        )
        from harness.tracking.store import machine_tags

        base_tags = {**machine_tags(machine), "harness.git_commit": git[0]}
        tracker = None
        parent_run_id = state.parent_run_id
        tracking_error: str | None = None
        if options.tracking_uri:
            try:
                from harness.tracking.store import MlflowTracker

                tracker = MlflowTracker(options.tracking_uri)
                if parent_run_id:
                    tracker.reopen_parent(parent_run_id)
                else:
                    parent_run_id = tracker.start_parent(suite.name, profile, machine, git, suite_info)
                    journal.append({"type": "parent", "run_id": parent_run_id})
                delivered = _deliver_pending(tracker, journal, state, parent_run_id, suite.name, base_tags)
                if delivered:
                    notify(f"delivered {delivered} result(s) from an earlier run to MLflow")
            except Exception as exc:
                tracking_error = f"MLflow at {options.tracking_uri}: {type(exc).__name__}: {exc}"
                notify(f"tracking unavailable ({tracking_error}); results go to {journal.path} only")
                tracker = None
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
        if tracker is not None and parent_run_id is not None:
            from harness.tracking.store import BackgroundLogger

            logger = BackgroundLogger(
                tracker,
                parent_run_id,
                base_tags,
                lambda result, run_id: journal.mark_synced(result.record_id, run_id),
            )
        _call_observers(registry.hook.harness_run_started, run=run_info)
        results: list[CellResult] = []
        progress.start(len(cells), len(cells) - len(todo))
        executor = make_executor(options, registry.options) if todo else None
        try:
            for result in executor.run(todo) if executor else ():
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
        elif tracker is None and options.tracking_uri:
            undelivered = len(results)
        if tracker is not None and parent_run_id is not None and tracking_error is None:
            all_results = {r.cell.key: r for r in journal.read().results.values()}
            try:
                tracker.finish_parent(parent_run_id, dict(Counter(r.status for r in all_results.values())))
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
    )


@dataclass
class SyncReport:
    journal: str
    delivered: int
    already_present: int
    parent_run_id: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def sync_journals(results_dir: Path, tracking_uri: str | None) -> list[SyncReport]:
    """Deliver every journaled result MLflow does not have yet; safe to run any number of times."""
    from harness.tracking.store import MlflowTracker, machine_tags

    reports = []
    for journal in all_journals(results_dir):
        state = journal.read()
        pending = state.unsynced()
        if not pending:
            continue
        uri = tracking_uri or state.tracking_uri
        if not uri:
            reports.append(SyncReport(str(journal.path), 0, 0, None, "no tracking URI: pass --tracking-uri"))
            continue
        try:
            with journal.exclusive():
                tracker = MlflowTracker(uri)
                run = state.runs[-1] if state.runs else {}
                suite = run.get("suite") or journal.path.stem.split("--")[0]
                parent = state.parent_run_id
                machine = run.get("machine", {})
                git = (run.get("git_commit", "none"), bool(run.get("git_dirty")))
                if parent is None:
                    parent = tracker.start_parent(
                        suite, run.get("profile", "?"), machine, git, run.get("suite_info", {"suite": suite})
                    )
                    journal.append({"type": "parent", "run_id": parent})
                base_tags = {**machine_tags(machine), "harness.git_commit": git[0]}
                delivered = _deliver_pending(tracker, journal, state, parent, suite, base_tags)
                all_results = {r.cell.key: r for r in journal.read().results.values()}
                tracker.finish_parent(parent, dict(Counter(r.status for r in all_results.values())))
                journal.close()
                reports.append(SyncReport(str(journal.path), delivered, len(pending) - delivered, parent))
        except (TrackingError, BadInput) as exc:
            reports.append(SyncReport(str(journal.path), 0, 0, state.parent_run_id, str(exc)))
        except Exception as exc:
            reports.append(SyncReport(str(journal.path), 0, 0, state.parent_run_id, f"{type(exc).__name__}: {exc}"))
    return reports


def summary_json(summary: RunSummary) -> str:
    return json.dumps(summary.to_dict(), indent=2, default=str)
