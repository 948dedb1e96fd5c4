"""Writing records to MLflow, from the driver process only.

The layout (encoded and decoded by :mod:`harness.tracking.layout`): experiment = suite; one parent run per
suite-run configuration and store; one nested run per cell attempt.

SQLite allows one writer at a time, so workers never write: the driver logs results on a background thread,
in ``log_batch`` calls within MLflow's limits, while the next cells run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from harness.errors import TrackingError
from harness.record import CellResult, SuiteRunRecord, aggregate_results, name_problem, status_counts
from harness.tracking import layout
from harness.tracking.layout import MAX_TAG_LENGTH
from harness.tracking.uri import prepare_sqlite_store, sqlite_path

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
#: MLflow error codes that mean "this record is wrong", not "the server is not there": retrying cannot help,
#: and the other records must still be delivered.
REFUSAL_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "INVALID_STATE"}


class RecordRefused(TrackingError):
    """The store refused one record (a name or value MLflow does not accept); the others still go."""


_MLFLOW_STATUS = {"ok": "FINISHED", "failed": "FAILED", "skipped": "FINISHED"}


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


def check_record(result: CellResult) -> None:
    """Raise :class:`RecordRefused` for a record MLflow would refuse, before anything is sent."""

    for name in [*result.metrics, *{name for name, _, _ in result.history}]:
        problem = name_problem(name)
        if problem:
            raise RecordRefused(f"metric or curve name {name!r} of cell {result.cell.label}: {problem}")


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
        self._store_id: str | None = None

    @property
    def store(self) -> str:
        """``mlflow-store:<uuid>``: the id this store holds (created on first use), read once per tracker.

        Journals record parents and deliveries under it, so moving the results folder, or reaching one server
        by two addresses, never makes the same store look new (which delivered every record a second time
        under a second parent)."""
        if self._store_id is None:
            self._store_id = f"mlflow-store:{self._read_store_id()}"
        return self._store_id

    def _read_store_id(self) -> str:
        import uuid

        experiment = self._call(self.client.get_experiment_by_name, layout.STORE_EXPERIMENT)
        if experiment is None:
            try:
                self._call(
                    self.client.create_experiment,
                    layout.STORE_EXPERIMENT,
                    artifact_location=self._artifact_location(layout.STORE_EXPERIMENT),
                    tags={
                        layout.STORE_ID: uuid.uuid4().hex,
                        layout.NOTE: "Identifies this MLflow store to the harness (docs/security.md); holds no "
                        "runs. Deleting it makes the next harness run start new parent runs here.",
                    },
                )
            except Exception:  # created concurrently by another driver: its id is the one read below
                pass
            experiment = self._call(self.client.get_experiment_by_name, layout.STORE_EXPERIMENT)
            if experiment is None:
                raise TrackingError(f"MLflow at {self.tracking_uri}: could not create the store's id experiment")
        store_id = (experiment.tags or {}).get(layout.STORE_ID)
        if not store_id:  # the tag was removed by hand: give the store a new id
            store_id = uuid.uuid4().hex
            self._call(self.client.set_experiment_tag, experiment.experiment_id, layout.STORE_ID, store_id)
        return str(store_id)

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
                        self.client.set_experiment_tag,
                        experiment_id,
                        layout.EXPERIMENT_KIND,
                        layout.EXPERIMENT_KIND_VALUE,
                    )
            self._experiments[suite] = experiment_id
        return self._experiments[suite]

    def start_parent(self, run: SuiteRunRecord, extra_tags: Mapping[str, str] | None = None) -> str:
        """Create the parent run of one suite-run configuration, with its declarations and package freeze
        (``extra_tags``: what an importer knows beyond the record, such as the source's own machine facts)."""
        suite_info = run.suite_info
        tags = {**layout.suite_run_tags(run), **dict(extra_tags or {})}
        started = run.started_at or time.time()
        experiment_id = self.experiment_id(run.suite)
        sequence = self._next_sequence(experiment_id)
        tags[layout.SEQUENCE] = str(sequence)
        created = self._call(
            self.client.create_run,
            experiment_id,
            start_time=_ms(started),
            run_name=f"{run.suite}:{run.profile}:{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}",
            tags=tags,
        )
        run_id = created.info.run_id
        self._call(self.client.log_metric, run_id, layout.SEQUENCE_METRIC, float(sequence), _ms(started), 0)
        self._call(self.client.log_text, run_id, json.dumps(suite_info, indent=2), layout.SUITE_JSON)
        self._call(self.client.log_text, run_id, requirements_text(), layout.REQUIREMENTS)
        return run_id

    def _next_sequence(self, experiment_id: str) -> int:
        """One more than the largest sequence of the experiment's suite runs: "latest" follows it, not start
        times from machines whose clocks may disagree or step back. (Two runs created at the same moment may
        share one; start times then break the tie.)

        Parents also carry their sequence as a metric, so the largest is one ordered query, not a scan of every
        run (a year of nightly runs with hundreds of aggregate metrics each made the scan the slowest step of a
        new run). A store whose parents predate the metric is scanned once; the parent then created has it."""
        newest = self._call(
            self.client.search_runs,
            [experiment_id],
            filter_string=layout.suite_runs_filter(),
            max_results=1,
            order_by=[f"metrics.`{layout.SEQUENCE_METRIC}` DESC"],
        )
        if newest and layout.SEQUENCE_METRIC in newest[0].data.metrics:
            return int(newest[0].data.metrics[layout.SEQUENCE_METRIC]) + 1
        largest, token = 0, None
        while True:
            page = self._call(
                self.client.search_runs,
                [experiment_id],
                filter_string=layout.suite_runs_filter(),
                max_results=5000,
                page_token=token,
            )
            for found in page:
                largest = max(largest, layout.run_sequence(found))
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

    def reopen_parent(self, run_id: str, suite_info: Mapping[str, Any] | None = None) -> None:
        """Mark the parent running again; with ``suite_info``, replace its ``suite.json`` (the same configuration,
        but what describes it, such as label renames, may have changed since the parent was made)."""
        self._call(self.client.update_run, run_id, status="RUNNING")
        self._call(self.client.set_tag, run_id, layout.STATUS, "running")
        if suite_info is not None:
            self._call(self.client.log_text, run_id, json.dumps(suite_info, indent=2), layout.SUITE_JSON)

    def finish_parent(
        self, run_id: str, results: Iterable[CellResult], refused: int = 0, expected: int | None = None
    ) -> None:
        """Close the parent with its cell counts and the per-(algorithm, environment, metric) aggregates of
        the latest attempt of every cell (also as ``aggregates.json``); with fewer results than the
        ``expected`` cells, its status says ``incomplete`` (a killed run, finished by ``sync``)."""
        from mlflow.entities import Metric, RunTag

        latest = list(results)
        counts = status_counts(result.status for result in latest)
        never_ran = max(0, expected - len({result.cell.key for result in latest})) if expected else 0
        if never_ran:
            counts["never_ran"] = never_ran
        now = _ms(time.time())
        aggregates = aggregate_results(latest)
        metrics = [Metric(f"cells_{k}", float(v), now, 0) for k, v in counts.items()]
        if refused:
            metrics.append(Metric("cells_refused", float(refused), now, 0))
        for row in aggregates:
            base = layout.aggregate_metric_prefix(row["algorithm"], row["environment"], row["metric"])
            if name_problem(base + "/mean") is None:
                metrics += [Metric(f"{base}/mean", row["mean"], now, 0), Metric(f"{base}/n", row["n"], now, 0)]
        failed = counts.get("failed", 0)
        tags = [RunTag(layout.STATUS, layout.finished_status_tag(failed, never_ran))]
        for start in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            batch_tags = tags if start == 0 else []
            self._call(self.client.log_batch, run_id, metrics=metrics[start : start + 900], tags=batch_tags)
        self._call(self.client.log_text, run_id, json.dumps(aggregates, indent=2), layout.AGGREGATES_JSON)
        # MLflow's own status too: KILLED for a run whose cells did not all run, so its UI does not show it done.
        status = "KILLED" if never_ran else "FAILED" if failed else "FINISHED"
        self._call(self.client.set_terminated, run_id, status=status)

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
                filter_string=layout.children_filter(parent_run_id),
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
        self,
        result: CellResult,
        parent_run_id: str,
        base_tags: Mapping[str, str],
        superseded: bool = False,
        unpaired_repeat: bool = False,
        sequence: int | None = None,
    ) -> str:
        """Log one cell attempt; raise :class:`RecordRefused` (after removing the partial run) when the store
        refuses its content, any other exception when the store cannot be reached."""
        from mlflow.entities import Metric, Param

        check_record(result)
        cell = result.cell
        tags = layout.cell_tags(result, parent_run_id, base_tags, superseded, unpaired_repeat, sequence)
        run = self._call(
            self.client.create_run,
            self.experiment_id(cell.suite),
            start_time=_ms(result.started_at),
            tags=tags,
            run_name=cell_run_name(result),
        )
        run_id = run.info.run_id
        try:
            params = [Param(key, value) for key, value in layout.cell_params(result)]
            timestamp = _ms(result.finished_at)
            metrics = [Metric(name, value, timestamp, step) for name, value, step in layout.cell_metrics(result)]
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
        tags = [InputTag("mlflow.data.context", "training"), InputTag(layout.INPUT_ORIGIN_TAG, str(item["origin"]))]
        inputs.append(DatasetInput(dataset, tags))
    return inputs


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
