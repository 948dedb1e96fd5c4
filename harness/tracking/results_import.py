"""Per-seed results from elsewhere (a paper's table, a colleague's export) as reported suite runs.

``harness import results FILE`` reads a CSV, Parquet or JSON file in the schema ``harness export`` writes
(:mod:`harness.tracking.table_schema`); a minimal file needs only the columns ``algorithm``, ``environment``,
``seed``, ``metric`` and ``value``. Rows are grouped into suite runs by (``suite``, ``profile``, ``run_id``)
where the file has those columns, and into cells by (algorithm, environment, seed); every cell is written
through :func:`harness.tracking.writer.write_suite_run`, so an exported table imported again exports the same
(typed parameters, machine, code versions, seeds).

Everything is checked before anything is written: a missing column, a value that is not a number, an
unknown status, an undeclared direction or a duplicate (algorithm, environment, seed, metric) refuses the
whole file with the file, the row and what to do, and nothing is imported. Imported runs are marked reported
(:attr:`harness.record.SuiteRun.reported`): every view says "reported: <source>", and they are never taken for
runs of this machine nor used as a hardware baseline.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.record import STATUSES, MetricDeclaration, is_bool, name_problem
from harness.tracking.table_schema import PARAM_PREFIX, REQUIRED_COLUMNS, typed_param
from harness.tracking.writer import CellToWrite
from harness.untrusted import visible

FILE_FORMATS = ("csv", "parquet", "json")
DEFAULT_PROFILE = "reported"
#: Problems listed in one refusal before "and N more".
MAX_PROBLEMS = 10
_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Row:
    """One row of the file: where it is (for errors) and its values by column."""

    where: str
    values: dict[str, Any]

    def get(self, column: str) -> Any:
        return self.values.get(column)


@dataclass
class PlannedRun:
    """One suite run the file holds, checked and ready to write."""

    suite: str
    profile: str
    source: str
    git_commit: str
    machine: dict[str, Any]
    cells: list[CellToWrite]
    metrics: dict[str, MetricDeclaration]
    rows: int
    original_run_id: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "profile": self.profile,
            "source": self.source,
            "rows": self.rows,
            "cells": len(self.cells),
            "algorithms": len({cell.algorithm for cell in self.cells}),
            "environments": len({cell.environment for cell in self.cells}),
            "seeds": len({cell.seed for cell in self.cells}),
            "metrics": sorted(self.metrics),
        }


@dataclass
class _Problems:
    path: Path
    found: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.found.append(message)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        shown = self.found[:MAX_PROBLEMS]
        more = f"\n  ... and {len(self.found) - MAX_PROBLEMS} more" if len(self.found) > MAX_PROBLEMS else ""
        raise BadInput(
            f"{self.path}: {len(self.found)} problem(s); nothing was imported. Fix the file and import it again:\n  "
            + "\n  ".join(shown)
            + more
        )


# -- reading -----------------------------------------------------------------------------------------------
def file_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FILE_FORMATS:
            raise BadInput(f"--format {fmt!r}: choose one of {', '.join(FILE_FORMATS)}")
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise BadInput(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}: pass --format csv|parquet|json"
        )
    return found


def _unquote_csv(text: str) -> str | None:
    """A CSV cell as ``harness export`` meant it: empty is no value, and the quote export puts before text a
    spreadsheet would run as a formula (:func:`harness.untrusted.csv_cell`) is taken off again."""
    if text == "":
        return None
    if text.startswith("'") and text[1:2] and text[1:].startswith(_FORMULA_START):
        return text[1:]
    return text


def read_rows(path: Path, fmt: str | None = None) -> tuple[list[str], list[Row]]:
    """The file's columns and rows (CSV text as text: typing happens in :func:`plan_import`)."""
    kind = file_format(path, fmt)
    try:
        if kind == "csv":
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    raise BadInput(f"{path}: the file is empty; it needs a header row ({', '.join(REQUIRED_COLUMNS)})")
                columns = [name.strip() for name in header]
                rows = []
                for index, record in enumerate(reader, start=1):
                    if not any(cell.strip() for cell in record):
                        continue
                    where = f"row {index} (line {reader.line_num})"
                    if len(record) != len(columns):
                        raise BadInput(
                            f"{path}: {where} has {len(record)} fields, the header has {len(columns)}; "
                            "nothing was imported (is a comma inside a value not quoted?)"
                        )
                    rows.append(Row(where, {c: _unquote_csv(v) for c, v in zip(columns, record, strict=True)}))
                return columns, rows
        if kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            return list(table.column_names), [Row(f"row {i}", r) for i, r in enumerate(table.to_pylist(), start=1)]
        data = json.loads(path.read_text(encoding="utf-8"))
    except BadInput:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise BadInput(f"{path}: not a readable {kind} file ({exc}); nothing was imported") from None
    except Exception as exc:  # pyarrow's own errors (ArrowInvalid) for a damaged Parquet file
        problem = f"{type(exc).__name__}: {exc}"
        raise BadInput(f"{path}: not a readable {kind} file ({problem}); nothing was imported") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise BadInput(f"{path}: expected a JSON list of row objects (as `harness export --format json` writes)")
    columns = list(dict.fromkeys(key for item in data for key in item))
    return columns, [Row(f"row {i}", dict(item)) for i, item in enumerate(data, start=1)]


# -- typing one value --------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _number(value: Any) -> float | None:
    """A finite float, or None when ``value`` is not one (text that does not parse, a boolean, NaN, inf)."""
    if value is None or is_bool(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    if number is None or number != int(number):
        return None
    return int(number)


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


# -- checking and grouping ---------------------------------------------------------------------------------
def plan_import(
    path: Path,
    *,
    suite: str | None = None,
    profile: str | None = None,
    source: str | None = None,
    declarations: Mapping[str, Mapping[str, Any]] | None = None,
    known_metrics: Mapping[str, MetricDeclaration] | None = None,
    fmt: str | None = None,
) -> list[PlannedRun]:
    """Read and check ``path``; return the suite runs it holds. Raises :class:`BadInput` listing every problem
    (file, row, column, what to do) when anything is wrong: then nothing may be written.

    ``declarations``: metric -> ``{"unit", "direction", "comparable_across_tasks"}`` given on the command line
    (they win over the file's columns); ``known_metrics``: the declarations of metrics installed plugins
    define, used where neither says.
    """
    columns, rows = read_rows(path, fmt)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BadInput(
            f"{path}: missing column(s) {', '.join(missing)}; a results file needs {', '.join(REQUIRED_COLUMNS)} "
            f"(the file has: {', '.join(columns) or 'none'}). Nothing was imported."
        )
    if not rows:
        raise BadInput(f"{path}: no rows under the header; nothing was imported")
    problems = _Problems(path)
    if suite is None and "suite" not in columns:
        problems.add("no suite: pass --suite NAME, or add a 'suite' column")
    if not source and not any(_text(row.get("source")) for row in rows):
        problems.add(
            "no source: say where these results come from with --source (a citation or a URL, e.g. "
            "--source 'Kostrikov et al. 2022, table 1'), or add a 'source' column"
        )
    problems.raise_if_any()

    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        key = (
            suite or _text(row.get("suite")) or "",
            profile or _text(row.get("profile")) or DEFAULT_PROFILE,
            _text(row.get("run_id")) or "",
        )
        if not key[0]:
            problems.add(f"{row.where}: the 'suite' column is empty; fill it in or pass --suite")
            continue
        groups.setdefault(key, []).append(row)
    metrics = _declarations(rows, problems, declarations or {}, known_metrics or {})
    planned = [_plan_run(key, group, problems, metrics, source) for key, group in groups.items()]
    problems.raise_if_any()
    return [run for run in planned if run is not None]


def _declarations(
    rows: Sequence[Row],
    problems: _Problems,
    given: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, MetricDeclaration],
) -> dict[str, MetricDeclaration]:
    """Each metric's unit, direction and comparability: the command line, else the file (every row agreeing),
    else an installed plugin's declaration; a metric without a direction is refused."""
    seen: dict[str, dict[str, tuple[Any, str]]] = {}
    for row in rows:
        metric = _text(row.get("metric"))
        if metric is None:
            continue
        fields = seen.setdefault(metric, {})
        for column in ("unit", "direction", "comparable_across_tasks"):
            value = row.get(column)
            if column == "comparable_across_tasks":
                try:
                    value = _flag(value)
                except ValueError as exc:
                    problems.add(f"{row.where}: column 'comparable_across_tasks' {exc}")
                    continue
            else:
                value = _text(value)
            if value is None:
                continue
            if column in fields and fields[column][0] != value:
                first, where = fields[column]
                problems.add(
                    f"{row.where}: metric {metric!r} has {column} {value!r}, but {where} gives {first!r}; "
                    "one metric has one definition"
                )
            fields.setdefault(column, (value, row.where))
    for metric in given:
        seen.setdefault(metric, {})
    declared: dict[str, MetricDeclaration] = {}
    for metric, fields in seen.items():
        problem = name_problem(metric)
        if problem:
            problems.add(f"metric name {metric!r}: {problem}; rename it in the file")
            continue
        option = dict(given.get(metric, {}))
        plugin = known.get(metric)
        direction = option.get("direction") or (fields["direction"][0] if "direction" in fields else None)
        direction = direction or (plugin.direction if plugin else None)
        if direction not in ("higher", "lower"):
            where = f" ({fields['direction'][1]})" if "direction" in fields else ""
            problems.add(
                f"metric {metric!r}{where}: direction {direction!r} is not 'higher' or 'lower'"
                if direction
                else f"metric {metric!r} has no direction: add a 'direction' column (higher or lower) or pass "
                f"--direction {metric}=higher (or =lower)"
            )
            continue
        unit = option.get("unit")
        if unit is None:
            unit = fields["unit"][0] if "unit" in fields else (plugin.unit if plugin else "")
        comparable = option.get("comparable_across_tasks")
        if comparable is None:
            comparable = (
                fields["comparable_across_tasks"][0]
                if "comparable_across_tasks" in fields
                else (plugin.comparable_across_tasks if plugin else False)
            )
        base = plugin or MetricDeclaration(metric)
        declared[metric] = MetricDeclaration(
            metric, str(unit), direction, base.threshold, base.description or "reported with the imported results",
            bool(comparable), base.depends_on_hardware,
        )  # fmt: skip
    return declared


def _json_value(row: Row, column: str, kind: type, problems: _Problems) -> Any:
    value = row.get(column)
    if value is None or isinstance(value, kind):
        return value if value is not None else kind()
    try:
        parsed = json.loads(str(value))
    except ValueError:
        parsed = None
    if not isinstance(parsed, kind):
        problems.add(f"{row.where}: column {column!r} is not a JSON {kind.__name__} ({str(value)[:60]!r})")
        return kind()
    return parsed


def _plan_run(
    key: tuple[str, str, str],
    rows: list[Row],
    problems: _Problems,
    metrics: Mapping[str, MetricDeclaration],
    source: str | None,
) -> PlannedRun | None:
    suite, profile, original_run_id = key
    cells: dict[tuple[str, str, int], CellToWrite] = {}
    cell_rows: dict[tuple[str, str, int], Row] = {}
    values_at: dict[tuple[str, str, int, str], str] = {}
    sources = {text for row in rows if (text := _text(row.get("source")))}
    for row in rows:
        algorithm, environment = _text(row.get("algorithm")), _text(row.get("environment"))
        seed, status = _integer(row.get("seed")), _text(row.get("status")) or "ok"
        metric, raw = _text(row.get("metric")), row.get("value")
        broken = False
        for column, label in (("algorithm", algorithm), ("environment", environment)):
            if not label:
                problems.add(f"{row.where}: column {column!r} is empty")
                broken = True
        if seed is None:
            problems.add(f"{row.where}: seed {row.get('seed')!r} is not a whole number")
            broken = True
        if status not in STATUSES:
            problems.add(f"{row.where}: status {status!r} is not one of {', '.join(STATUSES)}")
            broken = True
        value = _number(raw)
        if metric is None and status == "ok":
            problems.add(f"{row.where}: no metric in an ok row (a failed or skipped cell may have none)")
            broken = True
        if metric is not None and value is None:
            problems.add(
                f"{row.where}: value {raw!r} of metric {metric!r} is not a finite number; "
                "write the number (e.g. 87.3), or leave the cell out"
            )
            broken = True
        if broken:
            continue
        assert algorithm and environment and seed is not None
        case = (algorithm, environment, seed)
        if metric is not None:
            earlier = values_at.get((*case, metric))
            if earlier is not None:
                problems.add(
                    f"{row.where}: duplicate (algorithm {algorithm!r}, environment {environment!r}, seed {seed}, "
                    f"metric {metric!r}): {earlier} gives it already; keep one of the two rows"
                )
                continue
            values_at[(*case, metric)] = row.where
        cell = cells.get(case)
        if cell is None:
            cell = _new_cell(row, case, status, problems)
            cells[case] = cell
            cell_rows[case] = row
        elif _params(row) != _params(cell_rows[case]):
            problems.add(
                f"{row.where}: the cell {algorithm}/{environment}/seed={seed} has other parameters than in "
                f"{cell_rows[case].where}; give each configuration its own algorithm or environment label"
            )
            continue
        if metric is not None and value is not None:
            cell.metrics[metric] = value  # type: ignore[index]
    if not cells:
        return None
    first = rows[0]
    run_source = source or (sorted(sources)[0] if sources else "")
    if not source and len(sources) > 1:
        problems.add(f"suite run {suite}:{profile}: rows name several sources ({', '.join(sorted(sources))}); "
                     "pass --source or split the file")  # fmt: skip
    machine = {"fingerprint": _text(first.get("fingerprint")) or "", "cpu": _text(first.get("cpu")) or "",
               "gpu": _text(first.get("gpu")) or "none"}  # fmt: skip
    used = {name for cell in cells.values() for name in cell.metrics}
    return PlannedRun(
        suite=suite,
        profile=profile,
        source=run_source,
        git_commit=next((c for row in rows if (c := _text(row.get("git_commit")))), "none"),
        machine=machine,
        cells=list(cells.values()),
        metrics={name: declaration for name, declaration in metrics.items() if name in used},
        rows=len(rows),
        original_run_id=original_run_id,
    )


def _params(row: Row) -> dict[str, Any]:
    found = {}
    for column, value in row.values.items():
        if column.startswith(PARAM_PREFIX) and value is not None and _text(value) is not None:
            found[column.removeprefix(PARAM_PREFIX)] = typed_param(value)
    return found


def _new_cell(row: Row, case: tuple[str, str, int], status: str, problems: _Problems) -> CellToWrite:
    params = _params(row)
    groups: dict[str, dict[str, Any]] = {"algorithm": {}, "environment": {}, "budget": {}}
    for name, value in params.items():
        prefix, dot, rest = name.partition(".")
        if dot and prefix in groups:
            groups[prefix][rest] = value
    code_versions = _json_value(row, "code_versions", dict, problems)
    inputs = _json_value(row, "inputs", list, problems)
    has_machine = any(_text(row.get(c)) for c in ("fingerprint", "cpu", "gpu"))
    algorithm, environment, seed = case
    return CellToWrite(
        algorithm,
        environment,
        seed,
        status=status,
        metrics={},
        error=_text(row.get("error")) or "",
        params=groups["algorithm"],
        environment_params=groups["environment"],
        budget=groups["budget"],
        algorithm_name=str(params.get("algorithm") or ""),
        environment_name=str(params.get("environment") or ""),
        code_versions={str(k): str(v) for k, v in code_versions.items()},
        machine={c: _text(row.get(c)) or "" for c in ("fingerprint", "cpu", "gpu")} if has_machine else None,
        inputs=[dict(item) for item in inputs if isinstance(item, dict)],
    )


# -- writing -----------------------------------------------------------------------------------------------
def import_results(
    path: Path,
    tracking_uri: str,
    *,
    suite: str | None = None,
    profile: str | None = None,
    source: str | None = None,
    declarations: Mapping[str, Mapping[str, Any]] | None = None,
    known_metrics: Mapping[str, MetricDeclaration] | None = None,
    fmt: str | None = None,
) -> list[tuple[str, PlannedRun]]:
    """Check ``path`` and write the suite runs it holds as reported results; return (run id, run) pairs.

    All or nothing: every row is checked before the first write (:func:`plan_import`), and a run that fails
    while being written is removed with the runs this call wrote before it."""
    from mlflow.tracking import MlflowClient

    from harness.tracking.writer import delete_suite_run, write_suite_run

    planned = plan_import(
        path, suite=suite, profile=profile, source=source, declarations=declarations,
        known_metrics=known_metrics, fmt=fmt,
    )  # fmt: skip
    client = MlflowClient(tracking_uri=tracking_uri)
    written: list[tuple[str, PlannedRun]] = []
    run = None
    try:
        for run in planned:
            run_id = write_suite_run(
                client, suite=run.suite, profile=run.profile, metrics=run.metrics, cells=run.cells,
                machine=run.machine, git_commit=run.git_commit, source=run.source, reported=True,
                plugins={"import": "results"},
                extra_tags={"imported_from_run": run.original_run_id} if run.original_run_id else None,
            )  # fmt: skip
            written.append((run_id, run))
    except BaseException as exc:
        for run_id, _ in reversed(written):  # each with its cell runs: nothing is half-imported
            delete_suite_run(client, run_id)
        if not isinstance(exc, Exception) or run is None:
            raise
        undone = f" (the {len(written)} run(s) written before it were removed)" if written else ""
        hint = (
            "; its experiment was deleted: restore it (`mlflow experiments restore`) or import under another --suite"
            if "deleted" in str(exc)
            else ""
        )
        raise BadInput(
            f"{path}: the store refused suite {run.suite!r} ({run.profile}): {visible(exc)}; nothing was "
            f"imported{undone}{hint}"
        ) from exc
    return written
