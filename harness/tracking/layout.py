"""The MLflow layout, named once: every tag, param and metric name the harness writes or reads.

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
"""

from __future__ import annotations

import posixpath
import re

# -- tags on every harness run -------------------------------------------------------------------------
KIND = "harness.kind"
KIND_SUITE_RUN = "suite-run"
KIND_CELL = "cell"
KIND_CALIBRATION = "calibration"
SUITE = "harness.suite"
PROFILE = "harness.profile"
STATUS = "harness.status"
GIT_COMMIT = "harness.git_commit"
GIT_DIRTY = "harness.git_dirty"
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
BASELINE = "baseline"

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
CODE_PREFIX = "harness.code."  # harness.code.algorithm, harness.code.environment, harness.code.metric.<name>
INPUT_ORIGINS = "harness.inputs.origin"  # comma-separated origins of the cell's datasets
INPUT_PREFIX = "harness.input."  # harness.input.<name>.origin|path|sha256

# -- experiment tags ------------------------------------------------------------------------------------
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_VALUE = "custom_model_development"

# -- metric names --------------------------------------------------------------------------------------
CURVE_PREFIX = "curve/"
AGGREGATE_PREFIX = "agg/"

# -- artifacts -----------------------------------------------------------------------------------------
SUITE_JSON = "suite.json"
CELL_JSON = "cell.json"
REQUIREMENTS = "requirements.txt"
AGGREGATES_JSON = "aggregates.json"
REPORT_DIR = "report"

# MLflow's limits (mlflow.utils.validation): names of metrics, params and tags.
MAX_NAME_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000
_VALID_NAME = re.compile(r"^[/\w.\- :]*$")


def curve_key(name: str) -> str:
    return f"{CURVE_PREFIX}{name}"


def name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a metric, param or tag name; None when it accepts it.

    The same rules as ``mlflow.utils.validation`` (checked against it in the tests), applied where names are
    made (``context.log``, metric specs, ``harness plugins check``) so an author hears of a bad name at once,
    not as a delivery failure after the run.
    """
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH - len(CURVE_PREFIX):
        return f"the name is {len(name)} characters long; MLflow takes at most {MAX_NAME_LENGTH - len(CURVE_PREFIX)}"
    if not _VALID_NAME.match(name):
        bad = sorted({char for char in name if not _VALID_NAME.match(char)})
        return (
            f"it contains {' '.join(repr(c) for c in bad)}; MLflow names may only hold letters, digits, "
            "'_', '-', '.', ' ', ':' and '/'"
        )
    normalized = posixpath.normpath(name)
    if normalized != name or normalized == "." or normalized.startswith(("..", "/")):
        return f"MLflow treats names as paths and this one resolves to {normalized!r}"
    return None
