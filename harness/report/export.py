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

FORMATS = ("csv", "parquet", "json")


def tidy_rows(runs: Iterable[SuiteRun]) -> list[dict[str, Any]]:
    """One dict per (cell, metric) of every run, with the columns listed in the module docstring."""
    rows: list[dict[str, Any]] = []
    param_names: set[str] = set()
    for run in runs:
        for cell in run.cells:
            param_names.update(cell.params)
    for run in runs:
        for cell in run.cells:
            machine = run.cell_machine(cell)
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
                **{f"param.{name}": cell.params.get(name) for name in sorted(param_names)},
            }
            if not cell.metrics:
                rows.append({**base, "metric": None, "value": None, "unit": None, "direction": None})
            for metric, value in sorted(cell.metrics.items()):
                info = run.info(metric)
                rows.append({**base, "metric": metric, "value": float(value), "unit": info.unit,
                             "direction": info.direction})  # fmt: skip
    return rows


def to_table(rows: list[dict[str, Any]]) -> Any:
    """The rows as a :class:`pyarrow.Table` (typed columns; params stay strings, as MLflow holds them)."""
    import pyarrow as pa

    schema_fields = [
        ("run_id", pa.string()), ("suite", pa.string()), ("profile", pa.string()), ("cell_run_id", pa.string()),
        ("algorithm", pa.string()), ("environment", pa.string()), ("seed", pa.int64()), ("status", pa.string()),
        ("metric", pa.string()), ("value", pa.float64()), ("unit", pa.string()), ("direction", pa.string()),
        ("fingerprint", pa.string()), ("cpu", pa.string()), ("gpu", pa.string()), ("git_commit", pa.string()),
        ("code_versions", pa.string()), ("error", pa.string()),
    ]  # fmt: skip
    params = sorted({key for row in rows for key in row if key.startswith("param.")})
    schema = pa.schema([*schema_fields, *((name, pa.string()) for name in params)])
    return pa.Table.from_pylist(rows, schema=schema)


def write_export(runs: Iterable[SuiteRun], path: Path | None, fmt: str) -> bytes | None:
    """Write the tidy table of ``runs`` to ``path`` in ``fmt``; with no path return the bytes (csv, json)."""
    import pyarrow as pa

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = tidy_rows(list(runs))
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
