"""`harness import results` against real SQLite MLflow stores: a published per-seed CSV, the export -> import ->
export round trip, refusals with file and row (nothing half-imported), and `compare` on disjoint runs (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from harness.cli.reporting import COMMANDS
from harness.tracking.writer import CellToWrite, write_suite_run

METRICS = {
    "normalized_score": {"unit": "1", "direction": "higher", "comparable_across_tasks": True},
    "wall_time_s": {"unit": "s", "direction": "lower"},
}


def cli() -> click.Group:
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    return group


def invoke(uri: str, tmp_path: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli(), [*args, "--tracking-uri", uri, "--results-dir", str(tmp_path)])
    assert result.exit_code == code, result.output
    # MLflow logs its database set-up on stderr: JSON and paths are read from stdout alone.
    return result.stdout if code == 0 or "--json" in args else result.output


def suite_runs(uri: str, suite: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def published_csv(path: Path) -> Path:
    lines = ["algorithm,environment,seed,metric,value"]
    for algorithm, level in (("IQL", 80.0), ("CQL", 70.0)):
        for offset, environment in enumerate(("hopper-medium", "walker2d-medium")):
            for seed in range(3):
                lines.append(f"{algorithm},{environment},{seed},normalized_score,{level + offset + seed / 10}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_published_per_seed_csv_becomes_a_reported_run(tmp_path: Path) -> None:
    from harness.tracking.reader import RunStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = published_csv(tmp_path / "paper.csv")
    output = invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--source",
                    "Kostrikov et al. 2022, table 1", "--direction", "normalized_score=higher", "--unit",
                    "normalized_score=1", "--comparable-across-tasks", "normalized_score", "--json")  # fmt: skip
    (summary,) = json.loads(output)
    assert summary["rows"] == 12 and summary["cells"] == 12 and summary["algorithms"] == 2
    assert summary["source"] == "Kostrikov et al. 2022, table 1" and summary["profile"] == "reported"
    run = RunStore(uri).load(summary["run_id"])
    assert run.reported and run.source == "Kostrikov et al. 2022, table 1"
    assert run.provenance == "reported: Kostrikov et al. 2022, table 1"
    assert run.info("normalized_score").comparable_across_tasks and run.info("normalized_score").direction == "higher"
    assert run.scores_by_algorithm("normalized_score")["IQL"]["walker2d-medium"] == [81.0, 81.1, 81.2]
    assert {cell.seed for cell in run.cells} == {0, 1, 2}
    # Never a run of this machine: it differs from any measured run, even one with the same facts.
    from dataclasses import replace

    measured = replace(run, reported=False, source="")
    assert "results" in run.machine_differences(measured)
    # Never `latest`, a baseline or a trend point of this harness: reached by its source (or its run id).
    from harness.errors import BadInput

    store = RunStore(uri)
    with pytest.raises(BadInput, match="only 0 finished run"):
        store.resolve("latest", suite="d4rl")
    assert store.resolve("source=Kostrikov et al. 2022, table 1", suite="d4rl") == summary["run_id"]
    # The dry run checks and writes nothing.
    before = len(suite_runs(uri, "d4rl"))
    invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--source", "x", "--direction",
           "normalized_score=higher", "--dry-run")  # fmt: skip
    assert len(suite_runs(uri, "d4rl")) == before


def own_run(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    cells = []
    for algorithm, fingerprint in (("iql[lr=0.0003]", "fp-a"), ("-cql", "fp-b")):
        for environment in ("hopper", "walker"):
            for seed in (0, 7):
                cells.append(CellToWrite(
                    algorithm, environment, seed,
                    metrics={"normalized_score": 50.0 + seed, "wall_time_s": 1.5 + seed},
                    params={"lr": 3e-4, "layers": 2, "norm": True, "name": "big"},
                    environment_params={"dataset": "medium"}, budget={"steps": 1000},
                    algorithm_name=algorithm.strip("-").split("[")[0], environment_name=environment,
                    code_versions={"algorithm": "a1", "environment": "e1", "metric.normalized_score": "m1"},
                    machine={"fingerprint": fingerprint, "cpu": f"CPU {fingerprint}", "gpu": "none"},
                    inputs=[{"name": environment, "origin": "d4rl", "sha256": "ab" * 32}],
                ))  # fmt: skip
    cells.append(CellToWrite("iql[lr=0.0003]", "ant", 0, status="failed", error="boom", params={"lr": 3e-4}))
    return write_suite_run(MlflowClient(uri), suite="own", profile="short", metrics=METRICS, cells=cells,
                           machine={"fingerprint": "fp-a", "cpu": "CPU fp-a", "gpu": "none"},
                           git_commit="c0ffee" * 6 + "abcd")  # fmt: skip


#: Columns that name where a row is stored now, not what it is.
WHERE = {"run_id", "cell_run_id", "source", "reported", "store"}


def comparable(rows: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in row.items() if k not in WHERE} for row in rows),
                  key=lambda r: (r["algorithm"], r["environment"], r["seed"], r["metric"] or ""))  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
def test_export_import_export_gives_the_same_table(tmp_path: Path, fmt: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mine.db'}"
    run_id = own_run(uri)
    first = tmp_path / f"first.{fmt}"
    invoke(uri, tmp_path, "export", run_id, "--format", fmt, "--out", str(first))
    other = f"sqlite:///{tmp_path / 'other.db'}"
    output = invoke(other, tmp_path, "import", "results", str(first), "--source", "round trip", "--json")
    (summary,) = json.loads(output)
    second = tmp_path / f"second.{fmt}"
    invoke(other, tmp_path, "export", summary["run_id"], "--format", fmt, "--out", str(second))
    if fmt == "parquet":
        before, after = pq.read_table(first), pq.read_table(second)
        assert before.schema == after.schema
        assert before.schema.field("param.algorithm.lr").type == "double"
        assert before.schema.field("param.algorithm.layers").type == "int64"
        assert before.schema.field("param.algorithm.norm").type == "bool"
        before, after = before.to_pylist(), after.to_pylist()
    elif fmt == "json":
        before, after = json.loads(first.read_text()), json.loads(second.read_text())
    else:
        import pyarrow.csv as pacsv

        before, after = pacsv.read_csv(first).to_pylist(), pacsv.read_csv(second).to_pylist()
    assert len(before) == 17 and comparable(after) == comparable(before)
    row = next(r for r in after if r["algorithm"].endswith("cql") and r["metric"] == "wall_time_s")
    assert row["fingerprint"] == "fp-b" and row["cpu"] == "CPU fp-b"  # the cell's own machine, not the run's
    assert row["param.budget.steps"] == 1000 and row["param.environment.dataset"] == "medium"
    assert json.loads(row["code_versions"])["metric.normalized_score"] == "m1"
    assert json.loads(row["inputs"]) == [{"name": row["environment"], "origin": "d4rl", "sha256": "ab" * 32}]
    assert row["reported"] is True and row["source"] == "round trip"
    if fmt == "csv":  # the export's formula guard is undone on import: the label is "-cql" again
        assert row["algorithm"] == "'-cql"


def refused(tmp_path: Path, uri: str, text: str, *args: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    output = invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--source", "paper",
                    "--direction", "score=higher", *args, code=2)  # fmt: skip
    assert str(path) in output and "nothing was imported" in output.lower()
    assert suite_runs(uri, "d4rl") == []
    return output


def test_bad_rows_are_refused_with_file_and_row_and_nothing_is_imported(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    header = "algorithm,environment,seed,metric,value\n"
    good = "iql,hopper,0,score,1.0\n"
    output = refused(tmp_path, uri, "algorithm,environment,seed,value\niql,hopper,0,1.0\n")
    assert "missing column(s) metric" in output
    output = refused(tmp_path, uri, header + good + "iql,hopper,1,score,n/a\n")
    assert "row 2 (line 3)" in output and "'n/a'" in output and "not a finite number" in output
    output = refused(tmp_path, uri, header + good + "cql,hopper,0,score,2.0\niql,hopper,0,score,3.0\n")
    assert "row 3 (line 4)" in output and "duplicate" in output and "row 1 (line 2)" in output
    output = refused(tmp_path, uri, header + "iql,hopper,zero,score,1.0\n")
    assert "row 1 (line 2): seed 'zero' is not a whole number" in output
    path = tmp_path / "nodirection.csv"
    path.write_text(header + "iql,hopper,0,return,1.0\n")
    output = invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--source", "p", code=2)
    assert "metric 'return' has no direction" in output and "--direction return=higher" in output
    output = invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--direction", "return=higher",
                    code=2)  # fmt: skip
    assert "no source" in output
    # A name that would become a path is refused before anything is written.
    output = invoke(uri, tmp_path, "import", "results", str(path), "--suite", "../etc", "--source", "p",
                    "--direction", "return=higher", code=2)  # fmt: skip
    assert "suite name" in output and suite_runs(uri, "../etc") == []


def test_compare_exits_3_when_the_runs_share_no_row_and_lists_partial_overlap(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = published_csv(tmp_path / "paper.csv")
    (paper,) = json.loads(invoke(uri, tmp_path, "import", "results", str(path), "--suite", "d4rl", "--source",
                                 "paper", "--direction", "normalized_score=higher", "--json"))  # fmt: skip
    mine = tmp_path / "mine.csv"
    mine.write_text("algorithm,environment,seed,metric,value\n"
                    + "".join(f"NEW,hopper-medium,{s},normalized_score,{90 + s}\n" for s in range(3)))  # fmt: skip
    (own,) = json.loads(invoke(uri, tmp_path, "import", "results", str(mine), "--suite", "d4rl", "--source", "me",
                               "--direction", "normalized_score=higher", "--json"))  # fmt: skip
    output = invoke(uri, tmp_path, "compare", paper["run_id"], own["run_id"], "--json", code=3)
    data = json.loads(output)
    assert data["exit_code"] == 3 and data["nothing_compared"] is True and data["compared"] == 0
    assert data["summary"].startswith("NOTHING COMPARED") and "no regression" not in data["summary"]
    assert {row["only_in"] for row in data["not_compared"]} == {"baseline", "candidate"}
    text = invoke(uri, tmp_path, "compare", paper["run_id"], own["run_id"], code=3)
    assert "NOTHING COMPARED" in text
    # Partial overlap: the shared rows are compared, the others listed.
    mine.write_text(mine.read_text() + "".join(f"IQL,hopper-medium,{s},normalized_score,{80 + s / 10}\n"
                                               for s in range(3)))  # fmt: skip
    (own,) = json.loads(invoke(uri, tmp_path, "import", "results", str(mine), "--suite", "d4rl", "--source", "me",
                               "--direction", "normalized_score=higher", "--json"))  # fmt: skip
    data = json.loads(invoke(uri, tmp_path, "compare", paper["run_id"], own["run_id"], "--json", code=0))
    assert data["compared"] == 1 and len(data["not_compared"]) == 4
    assert "1 compared, 4 not compared" in data["summary"]


def test_a_file_whose_second_run_fails_to_write_leaves_no_run_of_the_first(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    # The store refuses the second run after the first was written: its suite's experiment was deleted, and
    # MLflow creates no run in a deleted experiment. The checks before writing cannot know this.
    client.delete_experiment(client.create_experiment("suite-b"))
    path = tmp_path / "two.csv"
    rows = ["suite,algorithm,environment,seed,metric,value"]
    rows += [f"{suite},iql,hopper,{seed},score,{seed}.5" for suite in ("suite-a", "suite-b") for seed in range(3)]
    path.write_text("\n".join(rows) + "\n")
    output = invoke(uri, tmp_path, "import", "results", str(path), "--source", "p", "--direction", "score=higher",
                    code=2)  # fmt: skip
    assert "suite-b" in output and "nothing was imported (the 1 run(s) written before it were removed)" in output
    assert "mlflow experiments restore" in output
    # Neither suite-a's parent nor any of its three cell runs is left behind, deleted or not visible.
    experiment = client.get_experiment_by_name("suite-a")
    assert experiment is not None
    from mlflow.entities import ViewType

    left = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    assert left == [], [run.data.tags for run in left]
    assert len(client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)) == 4
