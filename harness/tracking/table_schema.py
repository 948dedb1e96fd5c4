"""The tidy results table: the one definition ``harness export`` writes and ``harness import results`` reads.

One row per (cell, metric). :data:`COLUMNS` lists the columns in order with their types; every parameter of
a cell follows as a ``param.<name>`` column (``param.algorithm.<name>``, ``param.environment.<name>``,
``param.budget.<name>``, and the specs' names ``param.algorithm`` and ``param.environment``), typed as its
values are. A file to import needs only :data:`REQUIRED_COLUMNS`.
"""

from __future__ import annotations

import json
from typing import Any

#: The one definition of the tidy table: (column, pyarrow type name), in order. ``harness import results``
#: reads the same columns (:mod:`harness.tracking.results_import`); ``param.<name>`` columns follow them.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "string"), ("suite", "string"), ("profile", "string"), ("cell_run_id", "string"),
    ("algorithm", "string"), ("environment", "string"), ("seed", "int64"), ("status", "string"),
    ("metric", "string"), ("value", "float64"), ("unit", "string"), ("direction", "string"),
    ("fingerprint", "string"), ("cpu", "string"), ("gpu", "string"), ("git_commit", "string"),
    ("code_versions", "string"), ("error", "string"),
    # Added for leaderboards across runs and stores (issue 26): where each row comes from, and what a
    # leaderboard needs to rank it (pooling across tasks, the dataset's sha256).
    ("comparable_across_tasks", "bool"), ("inputs", "string"), ("source", "string"), ("reported", "bool"),
    ("store", "string"),
)  # fmt: skip
#: The columns a file for ``harness import results`` must have; every other column is optional.
REQUIRED_COLUMNS = ("algorithm", "environment", "seed", "metric", "value")
PARAM_PREFIX = "param."


def typed_param(text: Any) -> Any:
    """A parameter as MLflow holds it (text) read back as the value it was: numbers and booleans were logged as
    JSON, so ``"0.0003"`` is 0.0003 and ``"true"`` is True; anything else (a name, a list) stays text."""
    if not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def store_label(tracking_uri: str, show_paths: bool = False) -> str:
    """A store as tables and pages name it: a server's URL as it is, a local SQLite file by its file name
    only (its folder is a local path, shown only with ``show_paths``)."""
    from harness.tracking.uri import sqlite_path

    path = sqlite_path(tracking_uri) if tracking_uri else None
    if path is None or show_paths:
        return tracking_uri
    return f"sqlite: {path.name}"
