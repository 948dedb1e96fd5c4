"""Tracking to a real `mlflow server` on 127.0.0.1: a run lands there with its artifacts; the server down at the
start, or going away mid-run, loses nothing, and `harness sync` delivers every cell exactly once when it is back.

One server (SQLite backend, its own artifact root) is shared by the module; tests stop and restart it on the
same port and store, as an operator would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from core_support import HARNESS, MlflowServer, harness_env, load_json, mlflow_cell_runs, run_harness

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
# MLflow's client retries a dead server with backoff before the harness's own retries; none here, to keep the
# outage tests short (the behaviour is the same, only reached sooner).
ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")


def write_suite(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "remote tracking test"\nmetrics = ["score"]\n{body}')
    return path


def assert_every_cell_once_with_its_metrics(uri: str, suite: str, cells: list[dict]) -> None:
    runs = mlflow_cell_runs(uri, suite)
    assert Counter(run.data.tags["harness.cell_key"] for run in runs) == Counter(cell["key"] for cell in cells)
    assert {run.data.tags["harness.cell_key"]: run.data.metrics.get("score") for run in runs} == {
        cell["key"]: cell["metrics"]["score"] for cell in cells
    }
    assert {run.info.status for run in runs} == {"FINISHED"}


def parent_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_run(run_id)


def test_mlflow_server_receives_a_run_with_its_artifacts(tmp_path: Path, server: MlflowServer) -> None:
    write_suite(tmp_path, "remote", """
seeds = [0, 1]
algorithms = ["random", "noop"]
environments = ["constant"]
""")  # fmt: skip
    process = run_harness("-p", "fixture_plugin", "run", "remote.toml", "-j", "2", "--tracking-uri", server.uri,
                          "--json", cwd=tmp_path, env=ENV)  # fmt: skip
    assert process.returncode == 0, process.stderr
    summary = load_json(process)
    assert summary["tracking_error"] is None and summary["undelivered"] == 0
    assert_every_cell_once_with_its_metrics(server.uri, "remote", summary["cells"])
    assert parent_run(server.uri, summary["parent_run_id"]).info.status == "FINISHED"
    # Artifacts go through the server to its artifact root: the client never touches the server's disk.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    run = mlflow_cell_runs(server.uri, "remote")[0]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    record = json.loads(Path(client.download_artifacts(run.info.run_id, "cell.json", str(tmp_path))).read_text())
    assert record["record_id"] == run.data.tags["harness.record_id"]
    assert list((server.store / "artifacts").rglob("cell.json"))


def sync(directory: Path) -> list[dict]:
    process = run_harness("sync", "--json", cwd=directory, env=ENV)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout) if process.stdout.strip().startswith("[") else []


def test_server_gone_mid_run_or_down_at_start_then_sync_gives_every_cell_once(
    tmp_path: Path, server: MlflowServer
) -> None:
    # 1. The server goes away mid-run: the first results are in MLflow, the rest still running.
    gone = tmp_path / "gone"
    gone.mkdir()
    marks = gone / "marks.txt"
    write_suite(gone, "outage", f"""
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
algorithms = [{{name = "marker", params = {{path = "{marks}", seconds = 0.5}}}}]
environments = ["constant"]
""")  # fmt: skip
    driver = subprocess.Popen(
        [*HARNESS, "-p", "fixture_plugin", "run", "outage.toml", "-j", "2", "--tracking-uri", server.uri, "--json"],
        cwd=gone, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    journal = gone / "results" / "journal" / "outage--smoke.jsonl"
    try:
        deadline = time.time() + 120
        while not (journal.exists() and '"type":"synced"' in journal.read_text()):
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no cell reached the tracking server in 120 s"
            time.sleep(0.05)
        server.kill()
        stdout, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr  # every cell succeeded; the tracking failure is reported, not fatal
    gone_summary = json.loads(stdout)
    assert gone_summary["counts"]["ok"] == 8
    assert gone_summary["tracking_error"] and gone_summary["undelivered"] >= 1
    assert "harness sync" in stderr

    # 2. While it is down, another suite starts: journal only, and the user is told.
    down = tmp_path / "down"
    down.mkdir()
    write_suite(down, "down", """
seeds = [0, 1, 2]
algorithms = ["random"]
environments = ["constant"]
""")  # fmt: skip
    process = run_harness("-p", "fixture_plugin", "run", "down.toml", "-j", "2", "--tracking-uri", server.uri,
                          "--json", cwd=down, env=ENV)  # fmt: skip
    assert process.returncode == 0, process.stderr
    down_summary = load_json(process)
    assert down_summary["counts"]["ok"] == 3
    assert down_summary["parent_run_id"] is None and down_summary["undelivered"] == 3
    assert "tracking unavailable" in process.stderr and "harness sync" in process.stderr

    # 3. The server is back (same port, same database): sync delivers everything, each cell exactly once.
    server.start()
    (report,) = sync(gone)
    assert report["error"] is None
    assert report["delivered"] + report["already_present"] == gone_summary["undelivered"]
    assert_every_cell_once_with_its_metrics(server.uri, "outage", gone_summary["cells"])
    assert parent_run(server.uri, gone_summary["parent_run_id"]).info.status == "FINISHED"
    assert sorted(marks.read_text().split()) == sorted(cell["key"] for cell in gone_summary["cells"])  # ran once
    (report,) = sync(down)
    assert report["error"] is None and report["delivered"] == 3
    assert_every_cell_once_with_its_metrics(server.uri, "down", down_summary["cells"])
    assert parent_run(server.uri, report["parent_run_id"]).info.status == "FINISHED"
    # A second sync finds nothing left, and duplicates nothing.
    assert sync(gone) == [] and sync(down) == []
    assert_every_cell_once_with_its_metrics(server.uri, "outage", gone_summary["cells"])
