"""MLflow tracking, from the driver process only.

The layout every report and comparison reads:

* experiment: the suite's name;
* one parent run per suite run (tag ``harness.kind=suite-run``) with the machine and version tags and a
  ``suite.json`` artifact holding each metric's unit, direction and regression threshold;
* one nested run per cell (tag ``harness.kind=cell``, ``mlflow.parentRunId``) with params ``algorithm``,
  ``environment``, ``seed``, ``algorithm.<param>``, ``environment.<param>``, ``budget.<key>``; the metric values
  (step 0) and curves (metric histories); tags for status, error, cell key, record id, labels; and the cell's
  full record as the ``cell.json`` artifact.

SQLite allows one writer at a time, so workers never write: the driver logs results on a background thread,
in ``log_batch`` calls within MLflow's limits, while the next cells run.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from harness.errors import TrackingError
from harness.tracking.record import CellResult

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000

_MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "skipped": "FINISHED"}


def default_tracking_uri(results_dir: Path) -> str:
    """``$HARNESS_TRACKING_URI``, else the embedded SQLite store ``results/mlflow.db``."""
    return os.environ.get("HARNESS_TRACKING_URI") or f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def prepare_sqlite_store(tracking_uri: str) -> None:
    """Create a new SQLite store by copying a pristine, already-migrated one.

    Creating an MLflow SQLite store runs every schema migration (seconds, tens of seconds on a loaded machine);
    the result depends only on the MLflow version, so it is built once per version under
    ``$HARNESS_CACHE_DIR`` (default ``~/.cache/harness``) and copied for every new store after that.
    """
    target = sqlite_path(tracking_uri)
    if target is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    from importlib.metadata import version

    cache = Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness"))
    template = cache / f"mlflow-{version('mlflow')}-empty.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = template.with_suffix(f".{os.getpid()}.tmp")
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{building}").search_experiments()
        _dispose_sqlite_engines()
        os.replace(building, template)  # atomic: concurrent builders never see a half-written template
    copy = target.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(template, copy)
    if not target.exists():
        os.replace(copy, target)
    else:
        copy.unlink()


def _dispose_sqlite_engines() -> None:
    """Close MLflow's cached SQLAlchemy engines so a template file is not held open while it is moved."""
    try:
        from mlflow.store.db import utils

        for engine in getattr(utils, "_engine_cache", {}).values():
            engine.dispose()
    except Exception:  # best effort; a held handle only delays nothing on Linux
        pass


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _is_transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("locked", "timeout", "timed out", "connection", "temporarily", "503"))


def machine_tags(machine: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        "harness.fingerprint": str(machine.get("fingerprint", "")),
        "harness.machine.cpu": str(machine.get("cpu", "")),
        "harness.machine.gpu": str(machine.get("gpu", "none")),
        "harness.machine.hostname": str(machine.get("hostname", "")),
    }
    for name, version in machine.get("versions", {}).items():
        tags[f"harness.versions.{name}"] = str(version)
    return tags


def cell_run_name(result: CellResult) -> str:
    return result.cell.label


class MlflowTracker:
    """Writes suite runs and cell runs to one tracking URI."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        if tracking_uri.startswith(("http://", "https://")):
            # MLflow's own default retries a dead server for minutes; the journal makes that unnecessary.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
            # Else every set_terminated prints "View run ... at: URL" on stdout (breaking `--json`) after an
            # extra get_run request per cell.
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        prepare_sqlite_store(tracking_uri)
        from mlflow.tracking import MlflowClient

        # After the import: mlflow configures its own loggers when imported.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._experiments: dict[str, str] = {}

    @retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    def _artifact_location(self, suite: str) -> str | None:
        """Artifacts of an embedded store live beside its database, not in ``./mlruns`` of whatever directory
        the harness was started from (MLflow's default for a SQLite store)."""
        database = sqlite_path(self.tracking_uri)
        if database is None:
            return None  # a server decides where its artifacts go
        return (database.parent / "mlartifacts" / suite).resolve().as_uri()

    def experiment_id(self, suite: str) -> str:
        if suite not in self._experiments:
            experiment = self._call(self.client.get_experiment_by_name, suite)
            if experiment is None:
                try:
                    experiment_id = self._call(
                        self.client.create_experiment, suite, artifact_location=self._artifact_location(suite)
                    )
                except Exception:  # created concurrently by another driver
                    experiment = self._call(self.client.get_experiment_by_name, suite)
                    if experiment is None:
                        raise
                    experiment_id = experiment.experiment_id
            else:
                experiment_id = experiment.experiment_id
            self._experiments[suite] = experiment_id
        return self._experiments[suite]

    def start_parent(
        self, suite: str, profile: str, machine: Mapping[str, Any], git: tuple[str, bool], suite_info: dict
    ) -> str:
        tags = {
            "harness.kind": "suite-run",
            "harness.suite": suite,
            "harness.profile": profile,
            "harness.status": "running",
            "harness.git_commit": git[0],
            "harness.git_dirty": "true" if git[1] else "false",
            "harness.version": str(machine.get("versions", {}).get("harness", "")),
            "harness.plugins": json.dumps(suite_info.get("plugins", {}), sort_keys=True)[:MAX_TAG_LENGTH],
            **machine_tags(machine),
        }
        run = self._call(
            self.client.create_run,
            self.experiment_id(suite),
            run_name=f"{suite}:{profile}:{time.strftime('%Y-%m-%d %H:%M:%S')}",
            tags=tags,
        )
        self._call(self.client.log_text, run.info.run_id, json.dumps(suite_info, indent=2), "suite.json")
        return run.info.run_id

    def reopen_parent(self, run_id: str) -> None:
        self._call(self.client.update_run, run_id, status="RUNNING")
        self._call(self.client.set_tag, run_id, "harness.status", "running")

    def finish_parent(self, run_id: str, counts: Mapping[str, int]) -> None:
        from mlflow.entities import Metric, RunTag

        now = _ms(time.time())
        failed = counts.get("failed", 0)
        metrics = [Metric(f"cells_{k}", float(v), now, 0) for k, v in counts.items()]
        tags = [RunTag("harness.status", "finished" if not failed else "finished with failures")]
        self._call(self.client.log_batch, run_id, metrics=metrics, tags=tags)
        self._call(self.client.set_terminated, run_id, status="FINISHED" if not failed else "FAILED")

    def logged_record_ids(self, suite: str, parent_run_id: str) -> dict[str, str]:
        """Record id -> run id of every cell already logged under ``parent_run_id`` (for de-duplication).

        A cell run still RUNNING was cut short (the server or the driver went away inside :meth:`log_cell`,
        which terminates every run it completes): it is deleted here, so the result is logged again in full
        rather than counted as delivered without its metrics.
        """
        found: dict[str, str] = {}
        token = None
        while True:
            page = self._call(
                self.client.search_runs,
                [self.experiment_id(suite)],
                filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                max_results=5000,
                page_token=token,
            )
            for run in page:
                record_id = run.data.tags.get("harness.record_id")
                if record_id and run.info.status == "RUNNING":
                    self._call(self.client.delete_run, run.info.run_id)
                elif record_id:
                    found[record_id] = run.info.run_id
            token = page.token
            if not token:
                return found

    def log_cell(self, result: CellResult, parent_run_id: str, base_tags: Mapping[str, str]) -> str:
        from mlflow.entities import Metric, Param

        cell = result.cell
        tags = {
            **base_tags,
            "mlflow.parentRunId": parent_run_id,
            "harness.kind": "cell",
            "harness.suite": cell.suite,
            "harness.profile": cell.profile,
            "harness.cell_key": cell.key,
            "harness.record_id": result.record_id,
            "harness.status": result.status,
            "harness.algorithm": cell.label.split("/")[0],
            "harness.algorithm_name": cell.algorithm.name,
            "harness.algorithm_version": cell.algorithm.version,
            "harness.environment": cell.label.split("/")[1],
            "harness.environment_name": cell.environment.name,
            "harness.environment_version": cell.environment.version,
            "harness.seed": str(cell.seed),
            "harness.task_kind": cell.task_kind,
            "harness.worker": result.worker,
            "harness.device": result.device or "none",
            "harness.attempt": str(result.attempt),
        }
        if result.error:
            tags["harness.error"] = result.error[:MAX_TAG_LENGTH]
        run = self._call(
            self.client.create_run,
            self.experiment_id(cell.suite),
            start_time=_ms(result.started_at),
            tags={key: value[:MAX_TAG_LENGTH] for key, value in tags.items()},
            run_name=cell_run_name(result),
        )
        run_id = run.info.run_id
        params = [Param("algorithm", cell.algorithm.name), Param("environment", cell.environment.name)]
        params.append(Param("seed", str(cell.seed)))
        for prefix, values in (
            ("algorithm", cell.algorithm.params),
            ("environment", cell.environment.params),
            ("budget", cell.budget),
        ):
            for key, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value)
                params.append(Param(f"{prefix}.{key}", text[:MAX_PARAM_LENGTH]))
        timestamp = _ms(result.finished_at)
        metrics = [Metric(name, value, timestamp, 0) for name, value in result.metrics.items()]
        metrics += [Metric(name, value, timestamp, step) for name, step, value in result.history]
        for batch_metrics, batch_params in _batches(metrics, params):
            self._call(self.client.log_batch, run_id, metrics=batch_metrics, params=batch_params, tags=[])
        self._call(self.client.log_text, run_id, json.dumps(result.to_dict(), default=str), "cell.json")
        self._call(self.client.set_terminated, run_id, status=_MLFLOW_STATUS[result.status], end_time=timestamp)
        return run_id


def _batches(metrics: list[Any], params: list[Any]) -> Iterable[tuple[list[Any], list[Any]]]:
    """Split into ``log_batch`` calls within MLflow's limits (1000 metrics, 100 params, 1000 in all)."""
    metric_index = param_index = 0
    while metric_index < len(metrics) or param_index < len(params):
        batch_params = params[param_index : param_index + MAX_PARAMS_PER_BATCH]
        room = MAX_METRICS_PER_BATCH - len(batch_params)
        batch_metrics = metrics[metric_index : metric_index + room]
        metric_index += len(batch_metrics)
        param_index += len(batch_params)
        yield batch_metrics, batch_params


class BackgroundLogger:
    """Logs results to MLflow on a thread, in completion order, marking each as synced in the journal.

    After a failure that retries cannot fix (server down), it stops trying; the results stay in the journal
    for ``harness sync`` and :attr:`error` says what happened.
    """

    def __init__(
        self,
        tracker: MlflowTracker,
        parent_run_id: str,
        base_tags: Mapping[str, str],
        on_logged: Callable[[CellResult, str], None],
    ) -> None:
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.base_tags = dict(base_tags)
        self.on_logged = on_logged
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
                run_id = self.tracker.log_cell(result, self.parent_run_id, self.base_tags)
            except Exception as exc:
                uri = self.tracker.tracking_uri
                self.error = TrackingError(f"MLflow at {uri}: {type(exc).__name__}: {exc}")
                self.undelivered.append(result)
                continue
            self.delivered += 1
            self.on_logged(result, run_id)

    def close(self) -> None:
        """Wait until everything submitted has been logged (or given up on)."""
        self._queue.put(None)
        self._thread.join()
