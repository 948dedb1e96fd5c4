"""The codec between records and MLflow (harness.tracking.layout): what is written is read back, field by
field, for every record kind, through a real SQLite MLflow store; what the store does not hold stays unknown;
and no "harness.*" tag name is typed anywhere but in the codec."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from harness.errors import BadInput
from harness.record import (
    UNKNOWN_STATUS,
    CellResult,
    CellRun,
    ComponentRef,
    MachineFacts,
    MetricDeclaration,
    SuiteRun,
    SuiteRunRecord,
    make_cell,
)
from harness.tracking import layout

ROOT = Path(__file__).resolve().parents[1]
MACHINE = {
    "fingerprint": "fp-123",
    "cpu": "Test CPU",
    "gpu": "none",
    "hostname": "bench-1",
    "versions": {"harness": "9.9.9", "python": "3.11.7", "torch": "2.13.0"},
}
DECLARATIONS = {
    "score": MetricDeclaration("score", "1", "higher", 0.07, "a score", True, None),
    "wall_time_s": MetricDeclaration("wall_time_s", "s", "lower", 0.1, "time", False, None),
    "peak_mb": MetricDeclaration("peak_mb", "MB", "lower", 0.05, "memory", False, False),
}


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'codec.db'}"


def _result(seed: int, *, status: str = "ok") -> CellResult:
    algorithm = ComponentRef("iql", "2", "harness-rl", "1.0", {"lr": 3e-4, "hidden": [256, 256]}, "code-a")
    environment = ComponentRef("hopper", "1", "harness-d4rl", "1.0", {"quality": "medium"}, "code-e")
    cell = make_cell(
        suite="codec",
        profile="smoke",
        algorithm=algorithm,
        environment=environment,
        seed=seed,
        metrics=("score", "wall_time_s"),
        budget={"steps": 100},
        timeout_s=60.0,
        task_kind="offline-rl",
        algorithm_label="iql[lr=3e-4]",
        environment_label="hopper-medium",
        metric_code={"score": "code-m"},
    )
    return CellResult(
        cell=cell,
        status=status,  # type: ignore[arg-type]
        metrics={"score": 10.0 + seed, "wall_time_s": 1.5} if status == "ok" else {},
        history=[("loss", 0, 1.0), ("loss", 10, 0.5)] if status == "ok" else [],
        error=None if status == "ok" else "ValueError: boom",
        started_at=1_700_000_000.0 + seed,
        finished_at=1_700_000_001.0 + seed,
        worker="host:1",
        device="cpu",
        attempt=2,
        record_id=f"record-{seed}-{status}",
        inputs=[{"name": "hopper-medium", "origin": "generated", "path": "/data/h.hdf5", "sha256": "ab" * 32}],
    )


def _write(tmp_path: Path) -> tuple[str, SuiteRunRecord, list[CellResult]]:
    from harness.tracking.store import MlflowTracker

    results = [_result(0), _result(1, status="failed"), _result(2, status="skipped")]
    record = SuiteRunRecord(
        suite="codec",
        profile="smoke",
        config_id="cfg-1",
        cell_keys=[r.cell.key for r in results],
        tracking_uri=_uri(tmp_path),
        overrides=["algorithm.lr=3e-4"],
        selection=["seed=0,1"],
        machine=MACHINE,
        git_commit="0123456789abcdef0123456789abcdef01234567",
        git_dirty=True,
        git_commit_time=1_699_990_000.0,
        suite_info={
            "suite": "codec",
            "profile": "smoke",
            "metrics": {name: d.to_dict() for name, d in DECLARATIONS.items()},
            "thresholds": {"score": 0.07},
            "plugins": {"harness-rl": "1.0"},
            "report": {"pareto": [["wall_time_s", "score"]]},
            "renames": {"algorithm": {"iql-old": "iql[lr=3e-4]"}},
            "cells": 4,  # one more than were delivered: a run killed before its last cell
        },
        purpose="calibration",
        started_at=1_700_000_000.0,
    )
    tracker = MlflowTracker(_uri(tmp_path))
    parent = tracker.start_parent(record)
    base = layout.run_tags(record)
    for position, result in enumerate(results):
        tracker.log_cell(result, parent, base, sequence=position)
    tracker.finish_parent(parent, results)
    return parent, record, results


def _expected_cell(result: CellResult, run: CellRun) -> dict[str, object]:
    cell = result.cell
    return {
        "run_id": run.run_id,
        "status": result.status,
        "algorithm": cell.algorithm_label,
        "environment": cell.environment_label,
        "seed": cell.seed,
        "error": result.error or "",
        "cell_key": cell.key,
        "record_id": result.record_id,
        "algorithm_name": cell.algorithm.name,
        "environment_name": cell.environment.name,
        "metrics": result.metrics,
        "params": {
            "algorithm": "iql",
            "environment": "hopper",
            "seed": str(cell.seed),
            "algorithm.lr": "0.0003",
            "algorithm.hidden": "[256, 256]",
            "environment.quality": "medium",
            "budget.steps": "100",
        },
        "inputs": [{"name": "hopper-medium", "origin": "generated", "path": "/data/h.hdf5", "sha256": "ab" * 32}],
        "code_versions": {"algorithm": "code-a", "environment": "code-e", "metric.score": "code-m"},
        "machine": MachineFacts(fingerprint="fp-123", cpu="Test CPU", gpu="none"),
        "device": "cpu",
        "attempt": 2,
        "superseded": False,
        "sequence": cell.seed,  # the position it was delivered in (seeds 0, 1, 2 in order)
        "unpaired_repeat": False,
        "start_time_ms": int(result.started_at * 1000),
    }


def test_every_field_of_a_cell_and_a_suite_run_reads_back_as_written(tmp_path: Path) -> None:
    from harness.tracking.reader import RunStore

    parent, record, results = _write(tmp_path)
    run = RunStore(_uri(tmp_path)).load(parent)

    cell_fields = {f.name for f in dataclasses.fields(CellRun) if not f.name.startswith("_")} - {"tags"}
    by_seed = {cell.seed: cell for cell in run.cells}
    for result in results:
        decoded = by_seed[result.cell.seed]
        expected = _expected_cell(result, decoded)
        assert set(expected) == cell_fields, "a CellRun field has no round-trip check: add it here"
        assert {name: getattr(decoded, name) for name in expected} == expected
    assert by_seed[0].curves == {"loss": [(0, 1.0), (10, 0.5)]}
    assert by_seed[0].environment_display == "hopper-medium [generated data]"

    expected_run = {
        "run_id": parent,
        "experiment_id": run.experiment_id,
        "suite": "codec",
        "profile": "smoke",
        "status": "finished with failures",
        "start_time_ms": 1_700_000_000_000,
        "metric_info": DECLARATIONS,
        "thresholds": {"score": 0.07},
        "cells": run.cells,
        "machine_facts": MachineFacts(
            "fp-123", "Test CPU", "none", "bench-1", {"harness": "9.9.9", "python": "3.11.7", "torch": "2.13.0"}
        ),
        "git_commit": record.git_commit,
        "git_dirty": True,
        "git_commit_time": 1_699_990_000.0,
        "harness_version": "9.9.9",
        "plugins": {"harness-rl": "1.0"},
        "is_baseline": False,
        "source": "",
        "run_name": run.run_name,
        "report_options": {"pareto": [["wall_time_s", "score"]]},
        "tracking_uri": _uri(tmp_path),
        "renames": {"algorithm": {"iql-old": "iql[lr=3e-4]"}},
        "expected_cells": 4,
        "purpose": "calibration",
        "baseline_reason": "",  # never promoted: unknown stays empty
        "promoted_at": None,
        "reported": False,
    }
    run_fields = {f.name for f in dataclasses.fields(SuiteRun)} - {"tags"}
    assert set(expected_run) == run_fields, "a SuiteRun field has no round-trip check: add it here"
    assert {name: getattr(run, name) for name in expected_run} == expected_run
    assert run.run_name.startswith("codec:smoke:")
    assert run.status_counts() == {"ok": 1, "failed": 1, "skipped": 1, "never ran": 1}
    assert run.cells_never_run == 1 and not run.complete
    assert run.history_problem == "incomplete: 1 of 4 cell(s) never ran"
    assert run.info("peak_mb").is_hardware_dependent is False  # declared, not guessed from the unit
    assert run.info("wall_time_s").is_hardware_dependent is True
    assert run.machine == {"cpu": "Test CPU", "gpu": "none", "hostname": "bench-1", "harness": "9.9.9",
                           "python": "3.11.7", "torch": "2.13.0"}  # fmt: skip


def test_an_imported_pytest_benchmark_run_reads_back_with_its_source_machine_and_unpaired_repeats(
    tmp_path: Path,
) -> None:
    from harness.tracking.pytest_benchmark import ROUND_METRIC, import_file
    from harness.tracking.reader import RunStore

    data = {
        "version": "4.0.0",
        "datetime": "2026-11-01T10:00:00+00:00",
        "machine_info": {"node": "laptop", "python_version": "3.12.1", "cpu": {"brand_raw": "Some CPU"}},
        "commit_info": {"id": "feedfacefeedfacefeedfacefeedfacefeedface", "dirty": False},
        "benchmarks": [
            {"name": "test_sum[10]", "group": "sums", "params": {"n": 10},
             "stats": {"min": 1e-3, "max": 3e-3, "mean": 2e-3, "median": 2e-3, "stddev": 1e-4, "iqr": 1e-4,
                       "ops": 500.0, "rounds": 3, "iterations": 1, "data": [1e-3, 2e-3, 3e-3]}},
        ],
    }  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    parent = import_file(path, _uri(tmp_path))
    run = RunStore(_uri(tmp_path)).load(parent)
    assert run.source == "pytest-benchmark"
    assert run.git_commit == "feedfacefeedfacefeedfacefeedfacefeedface" and run.git_dirty is False
    assert run.plugins == {"pytest-benchmark": "4.0.0"}
    assert run.machine_facts.cpu == "Some CPU" and run.machine_facts.hostname == "laptop"
    assert run.machine_facts.versions == {"python": "3.12.1"} and run.machine_facts.fingerprint
    assert run.tags["pytest_benchmark.version"] == "4.0.0"  # the source's own facts, under its own names
    declared = run.info(ROUND_METRIC)
    assert declared == MetricDeclaration(ROUND_METRIC, "s", "lower", 0.05, declared.description)
    rounds = [cell for cell in run.cells if ROUND_METRIC in cell.metrics]
    assert len(rounds) == 3 and all(cell.unpaired_repeat for cell in rounds)
    assert run.unpaired_cases(ROUND_METRIC) == {("test_sum[10]", "sums")}
    (main,) = [cell for cell in run.cells if "bench_mean_s" in cell.metrics]
    assert main.unpaired_repeat is False and main.seed == 0 and main.status == "ok"
    assert main.curves == {"round_s": [(0, 1e-3), (1, 2e-3), (2, 3e-3)]}


def test_reported_results_read_back_reported_with_every_cell_fact_the_writer_was_given(tmp_path: Path) -> None:
    """The writer's fields added for imports (reported, environment and budget params, spec names, code versions,
    a cell's own machine, datasets) reach the store and decode back."""
    from mlflow.tracking import MlflowClient

    from harness.tracking.reader import RunStore
    from harness.tracking.writer import CellToWrite, write_suite_run

    cell = CellToWrite(
        "iql[lr=0.1]", "hopper", 3, metrics={"score": 1.5}, params={"lr": 0.1}, environment_params={"level": 2},
        budget={"steps": 10}, algorithm_name="iql", environment_name="hopper-v5",
        code_versions={"algorithm": "a1", "environment": "e1", "metric.score": "m1"},
        machine={"fingerprint": "fp-cell", "cpu": "Cell CPU", "gpu": "G"},
        inputs=[{"name": "hopper", "origin": "d4rl", "sha256": "ab" * 32}],
    )  # fmt: skip
    parent = write_suite_run(MlflowClient(_uri(tmp_path)), suite="codec", profile="reported",
                             metrics={"score": {"unit": "1", "direction": "higher"}}, cells=[cell],
                             machine={"fingerprint": "fp-run", "cpu": "Run CPU"}, source="Paper 2021",
                             reported=True)  # fmt: skip
    run = RunStore(_uri(tmp_path)).load(parent)
    assert run.reported is True and run.source == "Paper 2021" and run.provenance == "reported: Paper 2021"
    (decoded,) = run.cells
    assert decoded.algorithm_name == "iql" and decoded.environment_name == "hopper-v5"
    assert decoded.params["environment.level"] == "2" and decoded.params["budget.steps"] == "10"
    assert decoded.code_versions == {"algorithm": "a1", "environment": "e1", "metric.score": "m1"}
    assert decoded.machine == MachineFacts("fp-cell", "Cell CPU", "G")
    assert decoded.inputs == [{"name": "hopper", "origin": "d4rl", "sha256": "ab" * 32}]
    assert run.machine_facts.fingerprint == "fp-run"


def test_what_the_store_does_not_hold_stays_unknown(tmp_path: Path) -> None:
    """A cell run without a status tag or with an unreadable seed is neither "ok" nor seed 0; the report counts
    it as unknown and the export leaves its seed empty; the environment label is exported as recorded."""
    from mlflow.tracking import MlflowClient

    from harness.report.export import tidy_rows
    from harness.tracking.reader import RunStore

    parent, _record, results = _write(tmp_path)
    client = MlflowClient(_uri(tmp_path))
    experiment = client.get_run(parent).info.experiment_id
    tags = layout.cell_tags(results[0], parent, {})
    tags[layout.CELL_KEY] = "hand-made"
    tags[layout.SEED] = "not-a-number"
    del tags[layout.STATUS]
    made = client.create_run(experiment, tags=tags)
    client.log_metric(made.info.run_id, "score", 3.0)
    client.set_terminated(made.info.run_id)

    run = RunStore(_uri(tmp_path)).load(parent)
    (odd,) = [cell for cell in run.cells if cell.cell_key == "hand-made"]
    assert odd.status == UNKNOWN_STATUS and odd.seed is None and odd.seed_text == "unknown"
    assert odd not in run.ok_cells
    assert run.status_counts() == {"ok": 1, "failed": 1, "skipped": 1, UNKNOWN_STATUS: 1}
    rows = tidy_rows([run])
    assert {row["environment"] for row in rows} == {"hopper-medium"}  # no display marker in data
    assert [row["seed"] for row in rows if row["cell_run_id"] == odd.run_id] == [None]


# -- one owner of the layout's names ----------------------------------------------------------------------
_CODEC = ROOT / "harness" / "tracking" / "layout.py"


def _module_names() -> set[str]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "harness").rglob("*.py")
    }


def _stray_tag_strings(path: Path, modules: set[str]) -> list[str]:
    """String literals (and f-string heads) that start with ``harness.`` and are not a module of the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            text = str(node.values[0].value)
        if not text or not text.startswith("harness."):
            continue
        # A module's own name (a logger, an entry point "module:attr", a resource package) is not a tag name.
        if text.split(":")[0] in modules or text == "harness.":
            continue
        found.append(f"{path.name}:{node.lineno}: {text!r}")
    return sorted(set(found))  # an f-string's head is seen as the f-string and as its first constant


def test_no_harness_tag_name_is_typed_outside_the_codec() -> None:
    modules = _module_names()
    stray = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        if path != _CODEC:
            stray += _stray_tag_strings(path, modules)
    for template in sorted((ROOT / "harness").rglob("*.j2")):
        for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), 1):
            if '"harness.' in line or "'harness." in line:
                stray.append(f"{template.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not stray, "tag names belong to harness/tracking/layout.py (use its constants or decoded fields):\n" + (
        "\n".join(stray)
    )


def test_the_tag_scan_sees_a_stray_tag_name(tmp_path: Path) -> None:
    # The scan must find what it looks for, or its silence above proves nothing.
    planted = tmp_path / "planted.py"
    planted.write_text('TAG = "harness.status"\nWHERE = f"harness.machine.{1}"\nOK = "harness.tracking.layout"\n')
    found = _stray_tag_strings(planted, _module_names())
    assert len(found) == 2 and "harness.status" in found[0] and "harness.machine." in found[1]


def test_a_promotion_reads_back_with_its_reason_and_time_and_alerts_round_trip(tmp_path: Path) -> None:
    import math

    from harness.record import Alert
    from harness.tracking.reader import RunStore

    parent, _record, _results = _write(tmp_path)
    store = RunStore(_uri(tmp_path))
    run = store.load(parent)
    with pytest.raises(BadInput, match="incomplete: 1 of 4"):
        store.promote(run, "never: incomplete")
    complete = dataclasses.replace(run, expected_cells=3, purpose="")
    store.promote(complete, "accepted: the new allocator is slower by design", when=1_800_000_000.5)
    promoted = store.load(parent)
    assert promoted.is_baseline and promoted.promoted_at == 1_800_000_000.5
    assert promoted.baseline_reason == "accepted: the new allocator is slower by design"

    alert = Alert(suite="codec", profile="smoke", fingerprint="fp-123", metric="wall_time_s", algorithm="iql",
                  environment="hopper", relative_change=0.2, low=0.18, high=math.nan, opened_run_id=parent,
                  opened_commit=None, opened_at_ms=1_700_000_000_000, baseline_run_id="b" * 32,
                  baseline_commit="c" * 40, previous_commit="e" * 40, unit="s")  # fmt: skip
    stored = store.open_alert(alert, run.experiment_id)
    (read,) = store.alerts("codec")
    fields = {f.name for f in dataclasses.fields(Alert)}
    assert {name: getattr(read, name) for name in fields if name != "high"} == {
        name: getattr(stored, name) for name in fields if name != "high"
    }
    assert math.isnan(read.high) and read.is_open
    closed = dataclasses.replace(read, state="fixed", closed_run_id=parent, closed_commit="d" * 40,
                                 closed_at_ms=1_700_000_100_000, reason="level returned")  # fmt: skip
    store.close_alert(closed)
    (after,) = store.alerts("codec", state="fixed")
    assert after.closed_commit == "d" * 40 and after.reason == "level returned"
    assert after.closed_at_ms == 1_700_000_100_000
    assert store.alerts("codec", state="open") == []
