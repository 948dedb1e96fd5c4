"""Writing records to MLflow, from the driver process only.

The layout (names in :mod:`harness.tracking.layout`, read back by :mod:`harness.tracking.reader`): experiment =
suite; one parent run per suite-run configuration and store; one nested run per cell attempt.

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
from harness.tracking import layout
from harness.tracking.layout import MAX_PARAM_LENGTH, MAX_TAG_LENGTH
from harness.tracking.record import CellResult, SuiteRunRecord, metric_values_by_case, overflow_safe_mean

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
#: MLflow error codes that mean "this record is wrong", not "the server is not there": retrying cannot help,
#: and the other records must still be delivered.
REFUSAL_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "INVALID_STATE"}


class RecordRefused(TrackingError):
    """The store refused one record (a name or value MLflow does not accept); the others still go."""

_MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "skipped": "FINISHED"}


def store_identity(tracking_uri: str) -> str:
    """One spelling per store: the journal records deliveries per store, whatever path or slash named it."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        return f"sqlite:///{database.resolve()}"
    return tracking_uri.rstrip("/")


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
    if is_refusal(exc):
        return False
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("locked", "timeout", "timed out", "connection", "temporarily", "503"))


def is_refusal(exc: BaseException) -> bool:
    """Whether the store refused the request's content (as opposed to being unreachable or overloaded)."""
    if isinstance(exc, RecordRefused):
        return True
    code = getattr(exc, "error_code", None)
    return isinstance(code, str) and code in REFUSAL_CODES


def machine_tags(machine: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        layout.FINGERPRINT: str(machine.get("fingerprint", "")),
        f"{layout.MACHINE_PREFIX}cpu": str(machine.get("cpu", "")),
        f"{layout.MACHINE_PREFIX}gpu": str(machine.get("gpu", "none")),
        f"{layout.MACHINE_PREFIX}hostname": str(machine.get("hostname", "")),
    }
    for name, version in machine.get("versions", {}).items():
        tags[f"{layout.VERSION_PREFIX}{name}"] = str(version)
    return tags


#: The machine tags each cell run repeats from its parent: what comparisons filter cells on.
CELL_MACHINE_TAGS = (layout.FINGERPRINT, f"{layout.MACHINE_PREFIX}cpu", f"{layout.MACHINE_PREFIX}gpu")


def cell_machine_tags(parent_tags: Mapping[str, str]) -> dict[str, str]:
    return {key: str(parent_tags.get(key, "")) for key in CELL_MACHINE_TAGS}


def run_tags(run: SuiteRunRecord) -> dict[str, str]:
    """Tags every cell run of a suite run carries: what comparisons filter on (fingerprint, CPU, GPU) and
    the code's git state. The full machine facts and versions are on the parent run only: repeating a dozen
    version tags on every cell run doubled the rows MLflow writes per cell."""
    return {
        **cell_machine_tags(machine_tags(run.machine)),
        layout.GIT_COMMIT: run.git_commit,
        layout.MLFLOW_GIT_COMMIT: run.git_commit,
        layout.CONFIG_ID: run.config_id,
    }


def check_record(result: CellResult) -> None:
    """Raise :class:`RecordRefused` for a record MLflow would refuse, before anything is sent."""
    from harness.tracking.layout import name_problem

    for name in [*result.metrics, *{name for name, _, _ in result.history}]:
        problem = name_problem(name)
        if problem:
            raise RecordRefused(f"metric or curve name {name!r} of cell {result.cell.label}: {problem}")


def cell_tags(result: CellResult, parent_run_id: str, base_tags: Mapping[str, str], superseded: bool) -> dict:
    cell = result.cell
    tags = {
        **base_tags,
        layout.MLFLOW_PARENT: parent_run_id,
        layout.KIND: layout.KIND_CELL,
        layout.SUITE: cell.suite,
        layout.PROFILE: cell.profile,
        layout.CELL_KEY: cell.key,
        layout.RECORD_ID: result.record_id,
        layout.SCHEMA_VERSION: str(result.schema_version),
        layout.STATUS: result.status,
        layout.ALGORITHM: cell.algorithm_label or cell.algorithm.name,
        layout.ALGORITHM_NAME: cell.algorithm.name,
        layout.ALGORITHM_VERSION: cell.algorithm.version,
        layout.ENVIRONMENT: cell.environment_label or cell.environment.name,
        layout.ENVIRONMENT_NAME: cell.environment.name,
        layout.ENVIRONMENT_VERSION: cell.environment.version,
        layout.SEED: str(cell.seed),
        layout.TASK_KIND: cell.task_kind,
        layout.WORKER: result.worker,
        layout.DEVICE: result.device or "none",
        layout.ATTEMPT: str(result.attempt),
    }
    for component, version in cell.code_versions.items():
        tags[f"{layout.CODE_PREFIX}{component}"] = version or "unknown"
    if result.inputs:
        tags[layout.INPUT_ORIGINS] = ",".join(sorted({str(i.get("origin", "")) for i in result.inputs}))
        for item in result.inputs:
            for field_name in ("origin", "path", "sha256"):
                if item.get(field_name):
                    tags[f"{layout.INPUT_PREFIX}{item['name']}.{field_name}"] = str(item[field_name])
    if superseded:
        tags[layout.SUPERSEDED] = "true"
    if result.error:
        tags[layout.ERROR] = result.error[:MAX_TAG_LENGTH]
    return tags


def cell_run_name(result: CellResult) -> str:
    return result.cell.label


def requirements_text() -> str:
    """The installed distributions as ``name==version`` lines: the package freeze kept with every suite run."""
    from importlib import metadata

    lines = {f"{dist.metadata['Name']}=={dist.version}" for dist in metadata.distributions() if dist.metadata["Name"]}
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


class MlflowTracker:
    """Writes suite runs and cell runs to one tracking URI."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.store = store_identity(tracking_uri)
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
                        self.client.create_experiment,
                        suite,
                        artifact_location=self._artifact_location(suite),
                        tags={layout.EXPERIMENT_KIND: layout.EXPERIMENT_KIND_VALUE},
                    )
                except Exception:  # created concurrently by another driver
                    experiment = self._call(self.client.get_experiment_by_name, suite)
                    if experiment is None:
                        raise
                    experiment_id = experiment.experiment_id
            else:
                experiment_id = experiment.experiment_id
                if layout.EXPERIMENT_KIND not in (experiment.tags or {}):
                    self._call(
                        self.client.set_experiment_tag, experiment_id, layout.EXPERIMENT_KIND,
                        layout.EXPERIMENT_KIND_VALUE,
                    )
            self._experiments[suite] = experiment_id
        return self._experiments[suite]

    def start_parent(self, run: SuiteRunRecord, extra_tags: Mapping[str, str] | None = None) -> str:
        """Create the parent run of one suite-run configuration, with its declarations and package freeze
        (``extra_tags``: what an importer knows beyond the record, such as the source's own machine facts)."""
        suite_info = run.suite_info
        tags = {
            layout.KIND: layout.KIND_SUITE_RUN,
            layout.SUITE: run.suite,
            layout.PROFILE: run.profile,
            layout.STATUS: "running",
            **machine_tags(run.machine),
            **run_tags(run),
            layout.GIT_DIRTY: "true" if run.git_dirty else "false",
            layout.HARNESS_VERSION: str(run.machine.get("versions", {}).get("harness", "")),
            layout.PLUGINS: json.dumps(suite_info.get("plugins", {}), sort_keys=True)[:MAX_TAG_LENGTH],
            layout.OVERRIDES: json.dumps(list(run.overrides))[:MAX_TAG_LENGTH],
            layout.SELECTION: json.dumps(list(run.selection))[:MAX_TAG_LENGTH],
            **dict(extra_tags or {}),
        }
        started = run.started_at or time.time()
        experiment_id = self.experiment_id(run.suite)
        tags[layout.SEQUENCE] = str(self._next_sequence(experiment_id))
        created = self._call(
            self.client.create_run,
            experiment_id,
            start_time=_ms(started),
            run_name=f"{run.suite}:{run.profile}:{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}",
            tags=tags,
        )
        run_id = created.info.run_id
        self._call(self.client.log_text, run_id, json.dumps(suite_info, indent=2), layout.SUITE_JSON)
        self._call(self.client.log_text, run_id, requirements_text(), layout.REQUIREMENTS)
        return run_id

    def _next_sequence(self, experiment_id: str) -> int:
        """One more than the largest sequence of the experiment's suite runs: "latest" follows it, not start
        times from machines whose clocks may disagree or step back. (Two runs created at the same moment may
        share one; start times then break the tie.)"""
        largest, token = 0, None
        while True:
            page = self._call(
                self.client.search_runs,
                [experiment_id],
                filter_string=f"tags.`{layout.KIND}` = '{layout.KIND_SUITE_RUN}'",
                max_results=5000,
                page_token=token,
            )
            for found in page:
                text = found.data.tags.get(layout.SEQUENCE, "")
                if text.isdigit():
                    largest = max(largest, int(text))
            token = page.token
            if not token:
                return largest + 1

    def parent_exists(self, run_id: str) -> bool:
        """Whether ``run_id`` is a live run of this store (a journal's parent may belong to another store)."""
        try:
            run = self._call(self.client.get_run, run_id)
        except Exception as exc:
            if is_refusal(exc) or getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return run.info.lifecycle_stage == "active"

    def reopen_parent(self, run_id: str) -> None:
        self._call(self.client.update_run, run_id, status="RUNNING")
        self._call(self.client.set_tag, run_id, layout.STATUS, "running")

    def finish_parent(self, run_id: str, results: Iterable[CellResult], refused: int = 0) -> None:
        """Close the parent with its cell counts and the per-(algorithm, environment, metric) aggregates of
        the latest attempt of every cell (also as ``aggregates.json``)."""
        from mlflow.entities import Metric, RunTag

        latest = list(results)
        counts = {status: 0 for status in ("ok", "failed", "skipped")}
        for result in latest:
            counts[result.status] = counts.get(result.status, 0) + 1
        now = _ms(time.time())
        aggregates = aggregate_results(latest)
        metrics = [Metric(f"cells_{k}", float(v), now, 0) for k, v in counts.items()]
        if refused:
            metrics.append(Metric("cells_refused", float(refused), now, 0))
        for row in aggregates:
            base = f"{layout.AGGREGATE_PREFIX}{row['algorithm']}/{row['environment']}/{row['metric']}"
            if layout.name_problem(base + "/mean") is None:
                metrics += [Metric(f"{base}/mean", row["mean"], now, 0), Metric(f"{base}/n", row["n"], now, 0)]
        failed = counts.get("failed", 0)
        tags = [RunTag(layout.STATUS, "finished" if not failed else "finished with failures")]
        for start in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            batch_tags = tags if start == 0 else []
            self._call(self.client.log_batch, run_id, metrics=metrics[start : start + 900], tags=batch_tags)
        self._call(self.client.log_text, run_id, json.dumps(aggregates, indent=2), layout.AGGREGATES_JSON)
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
                filter_string=f"tags.`{layout.MLFLOW_PARENT}` = '{parent_run_id}'",
                max_results=5000,
                page_token=token,
            )
            for run in page:
                record_id = run.data.tags.get(layout.RECORD_ID)
                if record_id and run.info.status == "RUNNING":
                    self._call(self.client.delete_run, run.info.run_id)
                elif record_id:
                    found[record_id] = run.info.run_id
            token = page.token
            if not token:
                return found

    def mark_superseded(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._call(self.client.set_tag, run_id, layout.SUPERSEDED, "true")

    def log_cell(
        self, result: CellResult, parent_run_id: str, base_tags: Mapping[str, str], superseded: bool = False
    ) -> str:
        """Log one cell attempt; raise :class:`RecordRefused` (after removing the partial run) when the store
        refuses its content, any other exception when the store cannot be reached."""
        from mlflow.entities import Metric, Param

        check_record(result)
        cell = result.cell
        tags = cell_tags(result, parent_run_id, base_tags, superseded)
        run = self._call(
            self.client.create_run,
            self.experiment_id(cell.suite),
            start_time=_ms(result.started_at),
            tags={key: value[:MAX_TAG_LENGTH] for key, value in tags.items()},
            run_name=cell_run_name(result),
        )
        run_id = run.info.run_id
        try:
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
            metrics += [Metric(layout.curve_key(name), value, timestamp, step) for name, step, value in result.history]
            for batch_metrics, batch_params in _batches(metrics, params):
                self._call(self.client.log_batch, run_id, metrics=batch_metrics, params=batch_params, tags=[])
            if result.inputs:
                self._call(self.client.log_inputs, run_id, datasets=_dataset_inputs(result))
            self._call(self.client.log_text, run_id, json.dumps(result.to_dict(), default=str), layout.CELL_JSON)
            self._call(self.client.set_terminated, run_id, status=_MLFLOW_STATUS[result.status], end_time=timestamp)
        except Exception as exc:
            if not is_refusal(exc):
                raise  # unreachable: the RUNNING run is cleaned up by logged_record_ids on the next delivery
            try:
                self._call(self.client.delete_run, run_id)
            except Exception:  # the refusal is what the user must hear about
                pass
            raise RecordRefused(f"{cell.label}: {type(exc).__name__}: {exc}") from exc
        return run_id


def _dataset_inputs(result: CellResult) -> list[Any]:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for item in result.inputs:
        source = json.dumps({"path": item.get("path", ""), "origin": item.get("origin", "")})
        profile = json.dumps(item.get("details", {}), default=str)[:MAX_TAG_LENGTH]
        dataset = Dataset(
            name=str(item["name"]),
            digest=str(item.get("sha256", ""))[:36] or "none",
            source_type="local" if item.get("path") else "code",
            source=source,
            profile=profile,
        )
        tags = [InputTag("mlflow.data.context", "training"), InputTag("harness.origin", str(item["origin"]))]
        inputs.append(DatasetInput(dataset, tags))
    return inputs


def aggregate_results(results: Iterable[CellResult]) -> list[dict[str, Any]]:
    """Mean and count of each metric per (algorithm label, environment label) over ok cells."""
    return [
        {"algorithm": a, "environment": e, "metric": m, "mean": overflow_safe_mean(v), "n": len(v)}
        for (a, e, m), v in sorted(metric_values_by_case(results).items())
    ]


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
