"""Hostile plugins and damaged files (issue 23), through the real CLI and a real MLflow SQLite store: a cell that
exits or raises ``KeyboardInterrupt`` fails alone; a cell never inherits the process state an earlier cell left
in its worker; a cut or damaged journal line, a full disk and a planted symlink neither lose nor misroute results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core_support import harness_env, load_json, mlflow_cell_runs, run_harness

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "hostile_plugin")


def suite(directory: Path, body: str, name: str = "hostile") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "hostile plugins"\nmetrics = ["score"]\n'
                    f'environments = ["constant"]\n{body}')  # fmt: skip
    return path


def harness(tmp_path: Path, *args: str):
    return run_harness(*PLUGINS, *args, cwd=tmp_path, env=ENV)


def journal_results(tmp_path: Path, name: str, profile: str = "smoke") -> list[dict[str, Any]]:
    lines = (tmp_path / "results" / "journal" / f"{name}--{profile}.jsonl").read_text().splitlines()
    return [event["record"] for event in map(json.loads, lines) if event["type"] == "result"]


# -- case 1: SystemExit and KeyboardInterrupt from a cell ----------------------------------------------------------
def test_a_cell_that_exits_or_raises_keyboard_interrupt_fails_alone_and_the_run_finishes(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["exit", {name = "exit", label = "exit-3", params = {code = 3}}, "interrupt", '
          '"noop"]\n')  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    process = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert process.returncode == 1, process.stderr
    summary = load_json(process)
    cells = {cell["label"].split("/")[0]: cell for cell in summary["cells"]}
    assert cells.keys() == {"exit", "exit-3", "interrupt", "noop"}
    assert cells["noop"]["status"] == "ok"
    assert cells["exit"]["status"] == "failed" and "SystemExit" in cells["exit"]["error"]
    assert "sys.exit(0)" in cells["exit"]["error"]
    assert cells["exit-3"]["status"] == "failed" and "sys.exit(3)" in cells["exit-3"]["error"]
    assert cells["interrupt"]["status"] == "failed"
    assert "KeyboardInterrupt" in cells["interrupt"]["error"] and "raised by the cell" in cells["interrupt"]["error"]
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(uri).get_run(summary["parent_run_id"])
    assert parent.info.status == "FAILED", "the parent is closed (not left RUNNING), failed because cells failed"
    assert len(mlflow_cell_runs(uri, "hostile")) == 4
    again = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert again.returncode == 1 and load_json(again)["counts"] == {"ok": 0, "failed": 3, "skipped": 0}


# -- case 2: state a cell leaves in a reused worker -------------------------------------------------------------------
def test_a_cell_sees_the_same_process_state_whatever_ran_before_it_in_its_worker(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    suite(tmp_path, 'algorithms = ["probe"]\n', name="alone")
    suite(tmp_path, f'algorithms = [{{name = "mess", params = {{elsewhere = "{elsewhere}"}}}}, '
          '{name = "probe", label = "after-mess", params = {tag = "a"}}, "interop", '
          '{name = "probe", label = "after-interop", params = {tag = "b"}}]\n', name="after")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    alone = harness(tmp_path, "run", "alone.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert alone.returncode == 0, alone.stderr
    after = harness(tmp_path, "run", "after.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    statuses = {cell["label"].split("/")[0]: (cell["status"], cell["error"]) for cell in load_json(after)["cells"]}
    assert all(status == "ok" for status, _ in statuses.values()), statuses
    (clean,) = journal_results(tmp_path, "alone")
    results = {result["cell"]["algorithm_label"]: result for result in journal_results(tmp_path, "after")}
    expected = {k: v for k, v in clean["outcome"].items() if k != "pid"}
    for label in ("after-mess", "after-interop"):
        probe = results[label]
        assert {k: v for k, v in probe["outcome"].items() if k != "pid"} == expected, label
        assert probe["metrics"] == clean["metrics"] == {"score": 2.0}
    worker_pid = int(results["mess"]["worker"].rsplit(":", 1)[1])
    assert results["after-mess"]["outcome"]["pid"] == worker_pid, "restorable state: the worker is reused"
    interop_pid = results["interop"]["outcome"]["pid"]
    assert interop_pid == worker_pid
    assert results["after-interop"]["outcome"]["pid"] != interop_pid, "unrestorable state: the worker is replaced"
    in_store = {run.data.tags["harness.algorithm"]: run.data.metrics.get("score")
                for run in mlflow_cell_runs(uri, "after")}  # fmt: skip
    assert in_store["after-mess"] == in_store["after-interop"] == 2.0
