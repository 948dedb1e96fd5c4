"""The one two-way codec between the records (:mod:`harness.record`) and MLflow: every tag, param and metric
name the harness writes or reads, the encoders the writers use and the decoders every reader uses.

* experiment = suite (tag :data:`EXPERIMENT_KIND` so MLflow's UI opens it on the runs list);
* one parent run per suite run *configuration* and store (:data:`KIND` ``suite-run``) with the machine, code
  and version tags, ``suite.json`` (metric units, directions, thresholds), ``requirements.txt`` (the package
  freeze), ``aggregates.json`` and aggregate metrics (``agg/<algorithm>/<environment>/<metric>/mean``), and the
  report once ``harness report`` wrote one;
* one nested run per cell attempt (:data:`KIND` ``cell``) with params (``algorithm.<param>``, ...), the final
  metric values at step 0 under their own names, curves under ``curve/<name>`` (never mixed with the final
  value), dataset inputs (``mlflow.log_input``), tags for status, labels, seed, code versions, and the full
  record as ``cell.json``. An attempt replaced by a later one of the same cell key is tagged
  :data:`SUPERSEDED`; readers ignore it.

Readers get every value from run data (tags, params, metrics): no per-cell artifact download is needed.
:class:`~harness.record.CellRun` and :class:`~harness.record.SuiteRun` are only ever built here
(:func:`decode_cell`, :func:`decode_suite_run`); a value the store does not hold stays unknown. No
``"harness.*"`` tag name is written anywhere else (a test checks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.record import (
    NAME_PREFIX_RESERVE,
    STATUSES,
    UNKNOWN_STATUS,
    Alert,
    Cell,
    CellResult,
    CellRun,
    MachineFacts,
    MetricDeclaration,
    SuiteRun,
    SuiteRunRecord,
)

# -- tags on every harness run -------------------------------------------------------------------------
KIND = "harness.kind"
KIND_SUITE_RUN = "suite-run"
KIND_CELL = "cell"
KIND_CALIBRATION = "calibration"
KIND_ALERT = "alert"
SUITE = "harness.suite"
PROFILE = "harness.profile"
STATUS = "harness.status"
GIT_COMMIT = "harness.git_commit"
GIT_DIRTY = "harness.git_dirty"
#: The commit's committer date, seconds since the epoch (parent runs; absent when unknown).
GIT_COMMIT_TIME = "harness.git_commit_time"
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
MLFLOW_PARENT = "mlflow.parentRunId"
FINGERPRINT = "harness.fingerprint"
MACHINE_PREFIX = "harness.machine."
VERSION_PREFIX = "harness.versions."
HARNESS_VERSION = "harness.version"
PLUGINS = "harness.plugins"
CONFIG_ID = "harness.config_id"
OVERRIDES = "harness.overrides"
SELECTION = "harness.selection"
#: Where an imported suite run came from (``pytest-benchmark``); absent on runs of ``harness run``.
SOURCE = "harness.source"
#: Why the suite ran when not as a run of its own (``calibration``: a ``harness calibrate`` repeat).
PURPOSE = "harness.purpose"
#: "true" on results reported elsewhere (``harness import results``): never a run of this machine.
REPORTED = "harness.reported"
BASELINE = "baseline"
#: ``harness promote --reason`` and when it was promoted (seconds since the epoch): the newest promotion of a
#: suite, profile and machine is its baseline, whatever the order the runs were made in.
BASELINE_REASON = "harness.baseline.reason"
PROMOTED_AT = "harness.baseline.promoted_at"

# -- tags on alert runs (one MLflow run per alert, in the suite's experiment) ----------------------------
ALERT_PREFIX = "harness.alert."
ALERT_STATE = "harness.alert.state"

# -- tags on cell runs ---------------------------------------------------------------------------------
CELL_KEY = "harness.cell_key"
RECORD_ID = "harness.record_id"
SCHEMA_VERSION = "harness.schema_version"
ALGORITHM = "harness.algorithm"  # the suite's label of the algorithm entry (with swept values)
ALGORITHM_NAME = "harness.algorithm_name"
ALGORITHM_VERSION = "harness.algorithm_version"
ENVIRONMENT = "harness.environment"
ENVIRONMENT_NAME = "harness.environment_name"
ENVIRONMENT_VERSION = "harness.environment_version"
SEED = "harness.seed"
TASK_KIND = "harness.task_kind"
WORKER = "harness.worker"
DEVICE = "harness.device"
ATTEMPT = "harness.attempt"
ERROR = "harness.error"
SUPERSEDED = "harness.superseded"
#: Order of creation, which "latest" follows (never the wall clock, which can step back): on a suite run, one
#: more than the largest in its experiment when it was created; on a cell run, its record's position in the
#: journal that delivered it (later attempts of a cell come later).
SEQUENCE = "harness.sequence"
#: The same number as a metric on a parent run, so the largest is found by one ordered query.
SEQUENCE_METRIC = "harness.sequence"
CODE_PREFIX = "harness.code."  # harness.code.algorithm, harness.code.environment, harness.code.metric.<name>
INPUT_ORIGINS = "harness.inputs.origin"  # comma-separated origins of the cell's datasets
INPUT_PREFIX = "harness.input."  # harness.input.<name>.origin|path|sha256
#: Its seed numbers a repeat that is not a seed (pytest-benchmark rounds): never paired across runs.
UNPAIRED_REPEAT = "harness.repeat.unpaired"
#: On an MLflow dataset input: the dataset's origin (d4rl, minari, generated, ...).
INPUT_ORIGIN_TAG = "harness.origin"

# -- experiment tags ------------------------------------------------------------------------------------
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_VALUE = "custom_model_development"

# -- the store's own identity ----------------------------------------------------------------------------
#: An experiment holding no runs, only the tag :data:`STORE_ID`: a UUID generated when the harness first
#: writes to the store. Journals record deliveries per store id, so a store is the same store whatever its
#: URI is spelled as, and after its folder moved. Suite names cannot contain '.', so no suite collides with it.
STORE_EXPERIMENT = "harness.store"
STORE_ID = "harness.store_id"
NOTE = "mlflow.note.content"

# -- metric names --------------------------------------------------------------------------------------
CURVE_PREFIX = "curve/"
AGGREGATE_PREFIX = "agg/"

# -- artifacts -----------------------------------------------------------------------------------------
SUITE_JSON = "suite.json"
CELL_JSON = "cell.json"
REQUIREMENTS = "requirements.txt"
AGGREGATES_JSON = "aggregates.json"
REPORT_DIR = "report"

# MLflow's limits on values (mlflow.utils.validation); names are checked by harness.record.name_problem.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000
assert len(CURVE_PREFIX) <= NAME_PREFIX_RESERVE, "curve names would exceed MLflow's name limit"


def curve_key(name: str) -> str:
    return f"{CURVE_PREFIX}{name}"


# == encoding: records -> MLflow ==========================================================================
def machine_tags(machine: Mapping[str, Any]) -> dict[str, str]:
    """A suite run's machine facts (:func:`harness.machine.machine_info`'s dict) as parent-run tags."""
    tags = {
        FINGERPRINT: str(machine.get("fingerprint", "")),
        f"{MACHINE_PREFIX}cpu": str(machine.get("cpu", "")),
        f"{MACHINE_PREFIX}gpu": str(machine.get("gpu", "none")),
        f"{MACHINE_PREFIX}hostname": str(machine.get("hostname", "")),
    }
    for name, version in machine.get("versions", {}).items():
        tags[f"{VERSION_PREFIX}{name}"] = str(version)
    return tags


#: The machine tags each cell run repeats from its parent: what comparisons filter cells on.
CELL_MACHINE_TAGS = (FINGERPRINT, f"{MACHINE_PREFIX}cpu", f"{MACHINE_PREFIX}gpu")


def cell_machine_tags(machine: Mapping[str, Any]) -> dict[str, str]:
    """A cell's own machine facts (fingerprint, CPU, GPU) as its tags, where they are not its run's (an
    imported table whose rows came from several machines)."""
    tags = machine_tags(machine)
    return {key: tags[key] for key in CELL_MACHINE_TAGS}


def run_tags(run: SuiteRunRecord) -> dict[str, str]:
    """Tags every cell run of a suite run carries: what comparisons filter on (fingerprint, CPU, GPU) and
    the code's git state. The full machine facts and versions are on the parent run only: repeating a dozen
    version tags on every cell run doubled the rows MLflow writes per cell."""
    parent_machine = machine_tags(run.machine)
    return {
        **{key: parent_machine.get(key, "") for key in CELL_MACHINE_TAGS},
        GIT_COMMIT: run.git_commit,
        MLFLOW_GIT_COMMIT: run.git_commit,
        CONFIG_ID: run.config_id,
    }


def suite_run_tags(run: SuiteRunRecord) -> dict[str, str]:
    """The parent run's tags when it starts (status ``running`` until the run finishes)."""
    tags = {
        KIND: KIND_SUITE_RUN,
        SUITE: run.suite,
        PROFILE: run.profile,
        STATUS: "running",
        **machine_tags(run.machine),
        **run_tags(run),
        GIT_DIRTY: "true" if run.git_dirty else "false",
        HARNESS_VERSION: str(run.machine.get("versions", {}).get("harness", "")),
        PLUGINS: json.dumps(run.suite_info.get("plugins", {}), sort_keys=True)[:MAX_TAG_LENGTH],
        OVERRIDES: json.dumps(list(run.overrides))[:MAX_TAG_LENGTH],
        SELECTION: json.dumps(list(run.selection))[:MAX_TAG_LENGTH],
    }
    if run.git_commit_time is not None:
        tags[GIT_COMMIT_TIME] = f"{run.git_commit_time:.0f}"
    if run.source:
        tags[SOURCE] = run.source[:MAX_TAG_LENGTH]
    if run.purpose:
        tags[PURPOSE] = run.purpose
    if run.reported:
        tags[REPORTED] = "true"
    return tags


def finished_status_tag(failed: int, never_ran: int = 0) -> str:
    if never_ran:
        return "incomplete"
    return "finished" if not failed else "finished with failures"


def cell_tags(
    result: CellResult,
    parent_run_id: str,
    base_tags: Mapping[str, str],
    superseded: bool = False,
    unpaired_repeat: bool = False,
    sequence: int | None = None,
) -> dict[str, str]:
    """A cell attempt's tags: ``base_tags`` (:func:`run_tags`) and everything that identifies the cell."""
    cell = result.cell
    tags = {
        **base_tags,
        MLFLOW_PARENT: parent_run_id,
        KIND: KIND_CELL,
        SUITE: cell.suite,
        PROFILE: cell.profile,
        CELL_KEY: cell.key,
        RECORD_ID: result.record_id,
        SCHEMA_VERSION: str(result.schema_version),
        STATUS: result.status,
        ALGORITHM: cell.algorithm_label or cell.algorithm.name,
        ALGORITHM_NAME: cell.algorithm.name,
        ALGORITHM_VERSION: cell.algorithm.version,
        ENVIRONMENT: cell.environment_label or cell.environment.name,
        ENVIRONMENT_NAME: cell.environment.name,
        ENVIRONMENT_VERSION: cell.environment.version,
        SEED: str(cell.seed),
        TASK_KIND: cell.task_kind,
        WORKER: result.worker,
        DEVICE: result.device or "none",
        ATTEMPT: str(result.attempt),
    }
    for component, version in cell.code_versions.items():
        tags[f"{CODE_PREFIX}{component}"] = version or "unknown"
    if result.inputs:
        tags[INPUT_ORIGINS] = ",".join(sorted({str(i.get("origin", "")) for i in result.inputs}))
        for item in result.inputs:
            for field_name in ("origin", "path", "sha256"):
                if item.get(field_name):
                    tags[f"{INPUT_PREFIX}{item['name']}.{field_name}"] = str(item[field_name])
    if superseded:
        tags[SUPERSEDED] = "true"
    if unpaired_repeat:
        tags[UNPAIRED_REPEAT] = "true"
    if sequence is not None:
        tags[SEQUENCE] = str(sequence)
    if result.error:
        tags[ERROR] = result.error[:MAX_TAG_LENGTH]
    return {key: value[:MAX_TAG_LENGTH] for key, value in tags.items()}


def cell_params(result: CellResult) -> list[tuple[str, str]]:
    """``algorithm``, ``environment``, ``seed`` and every parameter as ``algorithm.<name>``,
    ``environment.<name>``, ``budget.<name>`` (strings as they are, anything else as JSON)."""
    return cell_config_params(result.cell)


def cell_config_params(cell: Cell) -> list[tuple[str, str]]:
    """The params :func:`cell_params` stores for ``cell``: what a stored cell's ``params`` are compared with to
    know it measured the same configuration."""
    params = [("algorithm", cell.algorithm.name), ("environment", cell.environment.name), ("seed", str(cell.seed))]
    for prefix, values in (
        ("algorithm", cell.algorithm.params),
        ("environment", cell.environment.params),
        ("budget", cell.budget),
    ):
        for key, value in values.items():
            text = value if isinstance(value, str) else json.dumps(value)
            params.append((f"{prefix}.{key}", text[:MAX_PARAM_LENGTH]))
    return params


def cell_metrics(result: CellResult) -> list[tuple[str, float, int]]:
    """(name, value, step): final values at step 0 under their own names, curves under ``curve/<name>``."""
    metrics = [(name, value, 0) for name, value in result.metrics.items()]
    metrics += [(curve_key(name), value, step) for name, step, value in result.history]
    return metrics


def aggregate_metric_prefix(algorithm: str, environment: str, metric: str) -> str:
    return f"{AGGREGATE_PREFIX}{algorithm}/{environment}/{metric}"


# == decoding: MLflow -> records ==========================================================================
def decode_machine(tags: Mapping[str, str], *, with_versions: bool = True) -> MachineFacts:
    versions = (
        {k.removeprefix(VERSION_PREFIX): v for k, v in tags.items() if k.startswith(VERSION_PREFIX)}
        if with_versions
        else {}
    )
    return MachineFacts(
        fingerprint=tags.get(FINGERPRINT, ""),
        cpu=tags.get(f"{MACHINE_PREFIX}cpu", ""),
        gpu=tags.get(f"{MACHINE_PREFIX}gpu", ""),
        hostname=tags.get(f"{MACHINE_PREFIX}hostname", ""),
        versions=dict(sorted(versions.items())),
    )


def decode_cell(
    run: Any,
    curve_loader: Callable[[CellRun], dict[str, list[tuple[int, float]]]] | None = None,
    legacy_record: Mapping[str, Any] | None = None,
) -> CellRun:
    """A cell run (:class:`mlflow.entities.Run` of ``harness.kind=cell``) as a :class:`CellRun`.

    ``legacy_record``: the ``cell.json`` of a run written before records carried a schema tag (its final
    values and curves shared metric keys, so they come from the record)."""
    tags = dict(run.data.tags)
    params = dict(run.data.params)
    raw = {k: float(v) for k, v in run.data.metrics.items()}
    metrics = {k: v for k, v in raw.items() if not k.startswith(CURVE_PREFIX) and _finite(v)}
    if legacy_record is not None:
        metrics = {k: float(v) for k, v in (legacy_record.get("metrics") or {}).items() if _finite(v)}
        curves: dict[str, list[tuple[int, float]]] = {}
        for name, step, value in legacy_record.get("history") or []:
            curves.setdefault(str(name), []).append((int(step), float(value)))
        curve_loader = lambda _cell, found=curves: {k: sorted(v) for k, v in found.items()}  # noqa: E731
    status = tags.get(STATUS, "")
    return CellRun(
        run_id=run.info.run_id,
        status=status if status in STATUSES else UNKNOWN_STATUS,
        algorithm=tags.get(ALGORITHM) or params.get("algorithm") or "",
        environment=tags.get(ENVIRONMENT) or params.get("environment") or "",
        seed=_optional_int(tags.get(SEED, params.get("seed"))),
        error=tags.get(ERROR, ""),
        cell_key=tags.get(CELL_KEY, ""),
        record_id=tags.get(RECORD_ID, ""),
        algorithm_name=tags.get(ALGORITHM_NAME, ""),
        environment_name=tags.get(ENVIRONMENT_NAME, ""),
        metrics=metrics,
        params=params,
        inputs=_inputs_from_tags(tags),
        code_versions={k.removeprefix(CODE_PREFIX): v for k, v in tags.items() if k.startswith(CODE_PREFIX)},
        machine=decode_machine(tags, with_versions=False),
        device="" if tags.get(DEVICE, "none") == "none" else tags[DEVICE],
        attempt=_optional_int(tags.get(ATTEMPT)),
        superseded=tags.get(SUPERSEDED) == "true",
        sequence=_optional_int(tags.get(SEQUENCE)),
        unpaired_repeat=tags.get(UNPAIRED_REPEAT) == "true",
        start_time_ms=int(run.info.start_time or 0),
        tags=tags,
        _curve_loader=curve_loader,
    )


def needs_legacy_record(run: Any) -> bool:
    """Whether a cell run predates the schema tag (its values must come from its ``cell.json``)."""
    return SCHEMA_VERSION not in run.data.tags


def decode_metric_declarations(suite_info: Mapping[str, Any]) -> dict[str, MetricDeclaration]:
    return {
        str(name): MetricDeclaration.from_dict(str(name), spec)
        for name, spec in (suite_info.get("metrics") or {}).items()
        if isinstance(spec, Mapping)
    }


def decode_suite_run(
    parent: Any, suite_info: Mapping[str, Any], cells: Iterable[CellRun], tracking_uri: str = ""
) -> SuiteRun:
    """A parent run (``harness.kind=suite-run``) with its ``suite.json`` and decoded cells as a :class:`SuiteRun`."""
    tags = dict(parent.data.tags)
    report = suite_info.get("report")
    commit = tags.get(GIT_COMMIT) or tags.get(MLFLOW_GIT_COMMIT) or ""
    return SuiteRun(
        run_id=parent.info.run_id,
        experiment_id=parent.info.experiment_id,
        suite=tags.get(SUITE) or str(suite_info.get("suite", "")),
        profile=tags.get(PROFILE) or str(suite_info.get("profile", "")),
        status=tags.get(STATUS) or UNKNOWN_STATUS,
        start_time_ms=int(parent.info.start_time or 0),
        metric_info=decode_metric_declarations(suite_info),
        thresholds={str(k): float(v) for k, v in (suite_info.get("thresholds") or {}).items()},
        cells=list(cells),
        machine_facts=decode_machine(tags),
        git_commit=None if commit in ("", "none") else commit,
        git_dirty=tags.get(GIT_DIRTY) == "true",
        git_commit_time=float(tags[GIT_COMMIT_TIME]) if _finite(tags.get(GIT_COMMIT_TIME)) else None,
        harness_version=tags.get(HARNESS_VERSION, ""),
        plugins=_json_object(tags.get(PLUGINS, "")),
        is_baseline=tags.get(BASELINE) == "true",
        source=tags.get(SOURCE, ""),
        run_name=parent.info.run_name or "",
        report_options=dict(report) if isinstance(report, dict) else {},
        tracking_uri=tracking_uri,
        renames=_renames(suite_info.get("renames")),
        expected_cells=_optional_int(suite_info.get("cells")),
        purpose=tags.get(PURPOSE, ""),
        baseline_reason=tags.get(BASELINE_REASON, ""),
        promoted_at=_optional_float(tags.get(PROMOTED_AT)),
        tags=tags,
        reported=tags.get(REPORTED) == "true",
    )


def decode_aggregates(rows: Any) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """``aggregates.json`` as (algorithm, environment, metric) -> (mean, std, n); std is NaN where the run
    predates it. Rows that are not well formed (someone else's store) are left out."""
    found: dict[tuple[str, str, str], tuple[float, float, int]] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping):
            continue
        try:
            key = (str(row["algorithm"]), str(row["environment"]), str(row["metric"]))
            mean, n = float(row["mean"]), int(row["n"])
        except (KeyError, TypeError, ValueError):
            continue
        std = _optional_float(row.get("std"))
        found[key] = (mean, math.nan if std is None else std, n)
    return found


def _renames(value: Any) -> dict[str, dict[str, str]]:
    """suite.json's ``renames``, keeping only text: it comes from a store, possibly someone else's."""
    if not isinstance(value, dict):
        return {}
    return {
        str(kind): {str(old): str(new) for old, new in found.items() if isinstance(new, str)}
        for kind, found in value.items()
        if kind in ("algorithm", "environment") and isinstance(found, dict)
    }


def is_cell_run(run: Any) -> bool:
    return run.data.tags.get(KIND) == KIND_CELL


def is_suite_run(run: Any) -> bool:
    return run.data.tags.get(KIND) == KIND_SUITE_RUN


def parent_run_id(run: Any) -> str:
    return run.data.tags.get(MLFLOW_PARENT, "")


def run_sequence(run: Any) -> int:
    """A stored run's :data:`SEQUENCE` (-1 for runs written before it: older than any that has one)."""
    text = run.data.tags.get(SEQUENCE, "")
    return int(text) if text.isdigit() else -1


def purpose(run: Any) -> str:
    """Why a parent run was made when not as a run of its own ("calibration", "bisect"; "" otherwise)."""
    return str(run.data.tags.get(PURPOSE, ""))


def is_reported(run: Any) -> bool:
    """Whether a parent run holds results reported elsewhere (``harness import results``)."""
    return run.data.tags.get(REPORTED) == "true"


def is_running(run: Any) -> bool:
    """Whether a parent run is still open (its run has not finished, or was killed before it could)."""
    return run.data.tags.get(STATUS, "") == "running"


# -- MLflow search filters: the clauses readers select runs with ------------------------------------------
def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def tag_filter(key: str, value: str) -> str:
    return f"tags.`{_quote(key)}` = '{_quote(value)}'"


def suite_runs_filter(profile: str | None = None) -> str:
    clauses = [tag_filter(KIND, KIND_SUITE_RUN)]
    if profile:
        clauses.append(tag_filter(PROFILE, profile))
    return " and ".join(clauses)


def baseline_filter(fingerprint: str | None = None) -> str:
    """Runs promoted to baseline; with ``fingerprint``, those of that machine only."""
    clause = tag_filter(BASELINE, "true")
    return f"{clause} and {tag_filter(FINGERPRINT, fingerprint)}" if fingerprint else clause


def commit_prefix_filter(prefix: str) -> str:
    """Suite runs whose recorded commit starts with ``prefix`` (lower-case hex, checked by the caller)."""
    return f"{tag_filter(KIND, KIND_SUITE_RUN)} and tags.`{GIT_COMMIT}` LIKE '{_quote(prefix)}%'"


def promotion_order(run: Any) -> tuple[float, int, int]:
    """Newest promotion first when sorted in reverse: promoted_at, then sequence, then start time."""
    promoted = _optional_float(run.data.tags.get(PROMOTED_AT))
    return (promoted if promoted is not None else 0.0, run_sequence(run), int(run.info.start_time or 0))


def baseline_tags(reason: str, promoted_at: float) -> dict[str, str]:
    return {BASELINE: "true", BASELINE_REASON: reason[:MAX_TAG_LENGTH], PROMOTED_AT: repr(promoted_at)}


# == alerts ================================================================================================
_ALERT_TEXT = (
    "suite", "profile", "fingerprint", "metric", "algorithm", "environment", "opened_run_id", "baseline_run_id",
    "unit", "closed_run_id", "reason",
)  # fmt: skip
_ALERT_NUMBERS = ("relative_change", "low", "high")


def alert_tags(alert: Alert) -> dict[str, str]:
    """An alert as the tags of its MLflow run (every field; the state is searchable)."""
    tags = {KIND: KIND_ALERT, SUITE: alert.suite, PROFILE: alert.profile, FINGERPRINT: alert.fingerprint}
    for name in _ALERT_TEXT:
        tags[f"{ALERT_PREFIX}{name}"] = str(getattr(alert, name))[:MAX_TAG_LENGTH]
    for name in _ALERT_NUMBERS:
        tags[f"{ALERT_PREFIX}{name}"] = repr(float(getattr(alert, name)))
    tags[f"{ALERT_PREFIX}opened_commit"] = alert.opened_commit or ""
    tags[f"{ALERT_PREFIX}baseline_commit"] = alert.baseline_commit or ""
    tags[f"{ALERT_PREFIX}previous_commit"] = alert.previous_commit or ""
    tags[f"{ALERT_PREFIX}closed_commit"] = alert.closed_commit or ""
    tags[f"{ALERT_PREFIX}opened_at_ms"] = str(alert.opened_at_ms)
    tags[f"{ALERT_PREFIX}closed_at_ms"] = "" if alert.closed_at_ms is None else str(alert.closed_at_ms)
    tags[ALERT_STATE] = alert.state
    return tags


def decode_alert(run: Any) -> Alert:
    tags = run.data.tags

    def text(name: str) -> str:
        return str(tags.get(f"{ALERT_PREFIX}{name}", ""))

    def number(name: str) -> float:
        value = _optional_float(tags.get(f"{ALERT_PREFIX}{name}"))
        return math.nan if value is None else value

    closed_at = _optional_int(text("closed_at_ms"))
    return Alert(
        suite=text("suite"),
        profile=text("profile"),
        fingerprint=text("fingerprint"),
        metric=text("metric"),
        algorithm=text("algorithm"),
        environment=text("environment"),
        relative_change=number("relative_change"),
        low=number("low"),
        high=number("high"),
        opened_run_id=text("opened_run_id"),
        baseline_run_id=text("baseline_run_id"),
        unit=text("unit"),
        closed_run_id=text("closed_run_id"),
        reason=text("reason"),
        opened_commit=text("opened_commit") or None,
        opened_at_ms=_optional_int(text("opened_at_ms")) or 0,
        baseline_commit=text("baseline_commit") or None,
        previous_commit=text("previous_commit") or None,
        state=str(tags.get(ALERT_STATE, "open")),
        closed_commit=text("closed_commit") or None,
        closed_at_ms=closed_at,
        alert_id=run.info.run_id,
    )


def alerts_filter(profile: str | None = None, fingerprint: str | None = None, state: str | None = None) -> str:
    clauses = [tag_filter(KIND, KIND_ALERT)]
    if profile:
        clauses.append(tag_filter(PROFILE, profile))
    if fingerprint:
        clauses.append(tag_filter(FINGERPRINT, fingerprint))
    if state:
        clauses.append(tag_filter(ALERT_STATE, state))
    return " and ".join(clauses)


def alert_closing_tags(alert: Alert) -> dict[str, str]:
    """The tags that change when an alert closes."""
    return {
        ALERT_STATE: alert.state,
        f"{ALERT_PREFIX}closed_run_id": alert.closed_run_id,
        f"{ALERT_PREFIX}closed_commit": alert.closed_commit or "",
        f"{ALERT_PREFIX}closed_at_ms": "" if alert.closed_at_ms is None else str(alert.closed_at_ms),
        f"{ALERT_PREFIX}reason": alert.reason[:MAX_TAG_LENGTH],
    }


def cells_of_filter(parent: str) -> str:
    return f"{tag_filter(MLFLOW_PARENT, parent)} and {tag_filter(KIND, KIND_CELL)}"


def children_filter(parent: str) -> str:
    return tag_filter(MLFLOW_PARENT, parent)


def _optional_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _optional_float(value: Any) -> float | None:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _json_object(text: str) -> dict[str, str]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _inputs_from_tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for key, value in tags.items():
        if key.startswith(INPUT_PREFIX):
            name, _, field_name = key.removeprefix(INPUT_PREFIX).rpartition(".")
            found.setdefault(name, {"name": name})[field_name] = value
    return [found[name] for name in sorted(found)]
