"""Suite runs as tidy tables for scripts: one row per cell and metric (``harness export``).

Columns: the suite run (``run_id``, ``suite``, ``profile``), the cell (``cell_run_id``, ``algorithm``,
``environment``, ``seed``, ``status``), the metric (``metric``, ``value``, ``unit``, ``direction``), the
machine (``fingerprint``, ``cpu``, ``gpu``), the code (``git_commit``, ``code_versions`` as JSON) and every
parameter of the cell as a ``param.<name>`` column. A failed or skipped cell has one row with an empty
metric and its reason in ``error``, so a script sees what is missing. The table is built with pyarrow and
written by its CSV and Parquet writers; JSON is the list of row objects.

In CSV, a text cell that a spreadsheet would run as a formula (it begins with ``=``, ``+``, ``-``, ``@``, tab or
carriage return: a label or parameter from a suite file or a shared store) is prefixed with a single quote
(:func:`harness.untrusted.csv_cell`, OWASP's advice); numbers, including negative ones, stay numbers.
Parquet and JSON are typed and keep every value as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.record import SuiteRun
from harness.tracking.table_schema import COLUMNS, PARAM_PREFIX, store_label, typed_param

FORMATS = ("csv", "parquet", "json")


def _column_type(values: list[Any]) -> str:
    """The pyarrow type of a parameter column: bool, int64 or float64 when every value is one, else string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int64"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


def _as_column(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "float64":
        return float(value)
    return value


def tidy_rows(runs: Iterable[SuiteRun], show_paths: bool = False) -> list[dict[str, Any]]:
    """One dict per (cell, metric) of every run, with the columns of :data:`COLUMNS` and typed parameters."""
    runs = list(runs)
    rows: list[dict[str, Any]] = []
    param_values: dict[str, list[Any]] = {}
    for run in runs:
        for cell in run.cells:
            for name, text in cell.params.items():
                param_values.setdefault(name, []).append(typed_param(text))
    param_types = {name: _column_type(values) for name, values in param_values.items()}
    for run in runs:
        store = store_label(run.tracking_uri, show_paths)
        for cell in run.cells:
            machine = run.cell_machine(cell)
            inputs = [{k: item[k] for k in ("name", "origin", "sha256") if item.get(k)} for item in cell.inputs]
            base = {
                "run_id": run.run_id,
                "suite": run.suite,
                "profile": run.profile,
                "cell_run_id": cell.run_id,
                "algorithm": cell.algorithm,
                "environment": cell.environment,
                "seed": cell.seed,
                "status": cell.status,
                "fingerprint": machine.fingerprint,
                "cpu": machine.cpu,
                "gpu": machine.gpu,
                "git_commit": run.git_commit,
                "code_versions": json.dumps(cell.code_versions, sort_keys=True),
                "error": cell.error,
                "inputs": json.dumps(inputs, sort_keys=True) if inputs else None,
                "source": run.source or None,
                "reported": run.reported,
                "store": store,
                **{
                    f"{PARAM_PREFIX}{name}": _as_column(typed_param(cell.params.get(name)), param_types[name])
                    for name in sorted(param_types)
                },
            }
            if not cell.metrics:
                rows.append({**base, "metric": None, "value": None, "unit": None, "direction": None,
                             "comparable_across_tasks": None})  # fmt: skip
            for metric, value in sorted(cell.metrics.items()):
                info = run.info(metric)
                rows.append({**base, "metric": metric, "value": float(value), "unit": info.unit,
                             "direction": info.direction,
                             "comparable_across_tasks": info.comparable_across_tasks})  # fmt: skip
    return rows


def _pa_type(name: str) -> Any:
    import pyarrow as pa

    return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}[name]


def to_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as a :class:`pyarrow.Table`: the columns of :data:`COLUMNS`, then ``param.<name>`` columns typed
    as their values are (bool, int64, float64, else string)."""
    import pyarrow as pa

    params = sorted({key for row in rows for key in row if key.startswith(PARAM_PREFIX)})
    param_fields = [(name, _pa_type(_column_type([row.get(name) for row in rows]))) for name in params]
    schema = pa.schema([*((name, _pa_type(kind)) for name, kind in COLUMNS), *param_fields])
    return pa.Table.from_pylist(rows, schema=schema)


def write_export(runs: Iterable[SuiteRun], path: Path | None, fmt: str, show_paths: bool = False) -> bytes | None:
    """Write the tidy table of ``runs`` to ``path`` in ``fmt``; with no path return the bytes (csv, json)."""
    import pyarrow as pa

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = tidy_rows(list(runs), show_paths)
    if fmt == "csv":
        from harness.untrusted import csv_cell

        rows = [{key: csv_cell(value) for key, value in row.items()} for row in rows]
    table = to_table(rows)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if path is None:
            raise ValueError("parquet needs a file (--out)")
        pq.write_table(table, path)
        return None
    if fmt == "csv":
        import pyarrow.csv as pacsv

        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink)
        data = sink.getvalue().to_pybytes()
    else:
        data = (json.dumps(table.to_pylist(), indent=1, default=str) + "\n").encode()
    if path is None:
        return data
    path.write_bytes(data)
    return None
