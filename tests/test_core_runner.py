"""The runner end to end through the real CLI: isolation, determinism, kill and resume, tracking, sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from core_support import HARNESS, harness_env, load_json, mlflow_cell_runs, run_harness

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")


def toy_suite(tmp_path: Path, body: str, name: str = "toy") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "test suite"\n{body}')
    return path


def test_failures_are_isolated_and_recorded_with_reasons(tmp_path: Path) -> None:
    toy_suite(
        tmp_path,
        """
seeds = [0]
metrics = ["score"]
timeout_s = 3
algorithms = ["noop", "raise", {name = "sleep", params = {seconds = 60.0}},
              {name = "crash", label = "exit", params = {how = "exit"}},
              {name = "crash", label = "segfault", params = {how = "segfault"}}, "random"]
environments = ["constant"]
""",
    )
    process = run_harness(
        "-p", "fixture_plugin", "run", "toy.toml", "--jobs", "2", "--json", "--no-tracking", cwd=tmp_path, env=ENV
    )
    assert process.returncode == 1, process.stderr
    cells = {cell["label"].split("/")[0]: cell for cell in load_json(process)["cells"]}
    assert cells["noop"]["status"] == "ok" and cells["random"]["status"] == "ok"
    assert cells["raise"]["status"] == "failed"
    assert "ValueError: this algorithm always fails" in cells["raise"]["error"]
    assert cells["sleep"]["status"] == "failed" and "timeout: exceeded 3 s" in cells["sleep"]["error"]
    assert cells["exit"]["status"] == "failed" and "exited with code 3" in cells["exit"]["error"]
    assert cells["segfault"]["status"] == "failed" and "SIGSEGV" in cells["segfault"]["error"]


def test_dry_run_lists_the_cells_and_which_a_resume_skips(tmp_path: Path) -> None:
    toy_suite(tmp_path, 'seeds = [0, 1]\nmetrics = ["score"]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n')
    base = ("-p", "fixture_plugin", "run", "toy.toml")
    plan = load_json(run_harness(*base, "--dry-run", "--json", cwd=tmp_path, env=ENV))
    assert [c["state"] for c in plan["cells"]] == ["to run", "to run"]
    assert not (tmp_path / "results").exists(), "a dry run writes nothing"
    done = run_harness(*base, "--no-tracking", "--json", "--set", "seeds=[0]", cwd=tmp_path, env=ENV)
    assert done.returncode == 0, done.stderr
    plan = load_json(run_harness(*base, "--dry-run", "--json", cwd=tmp_path, env=ENV))
    assert {c["seed"]: c["state"] for c in plan["cells"]} == {0: "done", 1: "to run"}
    assert plan["cells"][0]["key"] == load_json(done)["cells"][0]["key"]
    table = run_harness(*base, "--dry-run", cwd=tmp_path, env=ENV)
    assert table.returncode == 0 and "1 of 2 cells to run" in table.stdout


def test_same_suite_and_seed_give_identical_metrics(tmp_path: Path) -> None:
    toy_suite(
        tmp_path,
        """
seeds = [0, 1]
metrics = ["score"]
algorithms = [{name = "random", sweep = {scale = [1.0, 2.0]}}]
environments = ["constant"]
""",
    )
    outputs = []
    for attempt in range(2):
        process = run_harness(
            "-p",
            "fixture_plugin",
            "--results-dir",
            f"r{attempt}",
            "run",
            "toy.toml",
            "-j",
            "2",
            "--json",
            "--no-tracking",
            cwd=tmp_path,
            env=ENV,
        )
        assert process.returncode == 0, process.stderr
        outputs.append({c["key"]: c["metrics"] for c in load_json(process)["cells"]})
    assert outputs[0] == outputs[1]
    assert len({m["score"] for m in outputs[0].values()}) == 4  # seeds really differ


def test_results_land_in_mlflow_with_params_tags_curves_and_artifact(tmp_path: Path) -> None:
    toy_suite(
        tmp_path,
        """
seeds = [3]
metrics = ["score"]
algorithms = ["random"]
environments = ["constant"]
[profiles.smoke]
budget = {steps = 4}
""",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = run_harness(
        "-p", "fixture_plugin", "run", "toy.toml", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV
    )
    assert process.returncode == 0, process.stderr
    summary = load_json(process)
    (run,) = mlflow_cell_runs(uri, "toy")
    assert run.data.tags["mlflow.parentRunId"] == summary["parent_run_id"]
    assert run.data.tags["harness.status"] == "ok"
    assert run.data.tags["harness.cell_key"] == summary["cells"][0]["key"]
    assert run.data.tags["harness.algorithm"] == "random"
    assert run.data.tags["harness.profile"] == "smoke"
    assert run.data.tags["harness.machine.cpu"] and "harness.versions.python" not in run.data.tags
    from mlflow.tracking import MlflowClient as _Client

    assert _Client(uri).get_run(summary["parent_run_id"]).data.tags["harness.versions.python"], "versions: parent"
    assert run.data.params == {
        "algorithm": "random",
        "environment": "constant",
        "seed": "3",
        "algorithm.scale": "1.0",
        "environment.value": "1.0",
        "budget.steps": "4",
    }
    assert run.data.metrics["score"] == summary["cells"][0]["metrics"]["score"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "curve/curve")] == [0, 1, 2, 3]
    record = json.loads(Path(client.download_artifacts(run.info.run_id, "cell.json", str(tmp_path))).read_text())
    assert record["schema_version"] == 2 and record["cell"]["seed"] == 3
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["harness.kind"] == "suite-run" and parent.info.status == "FINISHED"
    suite_info = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "suite.json", str(tmp_path))).read_text()
    )
    assert suite_info["metrics"]["score"]["direction"] == "higher"


def test_sigkill_then_resume_finishes_the_rest_with_no_duplicates(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    toy_suite(
        tmp_path,
        f"""
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
metrics = ["score"]
algorithms = [{{name = "marker", params = {{path = "{marker}", seconds = 0.4}}}}]
environments = ["constant"]
""",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*HARNESS, "-p", "fixture_plugin", "run", "toy.toml", "-j", "2", "--tracking-uri", uri]
    driver = subprocess.Popen(
        args, cwd=tmp_path, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not marker.exists() or len(marker.read_text().split()) < 3):
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    first = len(marker.read_text().split())
    assert 3 <= first < 8
    process = run_harness(
        "-p", "fixture_plugin", "run", "toy.toml", "-j", "2", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV
    )
    assert process.returncode == 0, process.stderr
    summary = load_json(process)
    assert summary["already_finished"] >= 1
    runs = [r for r in mlflow_cell_runs(uri, "toy") if r.data.tags["harness.status"] == "ok"]
    keys = [r.data.tags["harness.cell_key"] for r in runs]
    assert len(keys) == 8 and len(set(keys)) == 8  # every cell exactly once
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {summary["parent_run_id"]}
    again = run_harness(
        "-p", "fixture_plugin", "run", "toy.toml", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV
    )
    assert load_json(again)["already_finished"] == 8
    assert len(mlflow_cell_runs(uri, "toy")) == 8


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's reaping is left


def _start_announcing_run(tmp_path: Path, pids: Path) -> subprocess.Popen:
    toy_suite(
        tmp_path,
        f"""
seeds = [0, 1]
metrics = ["score"]
algorithms = [{{name = "announce", params = {{path = "{pids}", seconds = 120.0}}}}]
environments = ["constant"]
""",
    )
    args = [*HARNESS, "-p", "fixture_plugin", "run", "toy.toml", "-j", "2", "--no-tracking"]
    return subprocess.Popen(
        args, cwd=tmp_path, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _worker_pids(pids: Path, count: int) -> list[int]:
    deadline = time.time() + 120
    while time.time() < deadline and (not pids.exists() or len(pids.read_text().split()) < count):
        time.sleep(0.05)
    return [int(pid) for pid in pids.read_text().split()]


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return not any(_alive(pid) for pid in pids)


def test_workers_do_not_outlive_a_driver_killed_with_sigkill(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    driver = _start_announcing_run(tmp_path, pids)
    try:
        workers = _worker_pids(pids, 2)
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as the out-of-memory killer would
        driver.wait()
        assert _gone_within(workers, 15), "orphaned workers kept running their 120 s cells"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    driver = _start_announcing_run(tmp_path, pids)
    try:
        workers = _worker_pids(pids, 2)
        driver.terminate()
        assert driver.wait(timeout=60) == 143
        assert "interrupted" in driver.stderr.read().decode()
        assert _gone_within(workers, 15)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)


def test_tracking_down_loses_nothing_and_sync_delivers_once(tmp_path: Path) -> None:
    toy_suite(
        tmp_path,
        """
seeds = [0, 1, 2]
metrics = ["score"]
algorithms = ["random"]
environments = ["constant"]
""",
    )
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    process = run_harness(
        "-p",
        "fixture_plugin",
        "run",
        "toy.toml",
        "--tracking-uri",
        dead,
        "--json",
        cwd=tmp_path,
        env={**ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    assert process.returncode == 0, process.stderr
    summary = load_json(process)
    assert summary["counts"]["ok"] == 3 and summary["tracking_error"]
    assert "harness sync" in process.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    synced = run_harness("sync", "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV)
    assert synced.returncode == 0, synced.stderr
    assert load_json(synced)[0]["delivered"] == 3
    assert run_harness("sync", "--tracking-uri", uri, cwd=tmp_path, env=ENV).stdout.startswith("nothing to sync")
    runs = mlflow_cell_runs(uri, "toy")
    assert sorted(r.data.metrics["score"] for r in runs) == sorted(c["metrics"]["score"] for c in summary["cells"])


def test_lifecycle_hooks_observe_the_run(tmp_path: Path) -> None:
    toy_suite(tmp_path, 'seeds = [0, 1]\nmetrics = ["score"]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n')
    log = tmp_path / "events.jsonl"
    process = run_harness(
        "-p",
        "fixture_plugin",
        "-p",
        "observer_plugin",
        "run",
        "toy.toml",
        "--no-tracking",
        cwd=tmp_path,
        env={**ENV, "OBSERVER_LOG": str(log)},
    )
    assert process.returncode == 0, process.stderr
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["started", "cell", "cell", "finished"]


def test_every_command_has_help(tmp_path: Path) -> None:
    for command in (["--help"], ["run", "--help"], ["list", "--help"], ["plugins", "--help"], ["sync", "--help"]):
        process = run_harness(*command, cwd=tmp_path)
        assert process.returncode == 0, process.stderr
        assert "Usage:" in process.stdout and len(process.stdout) > 200


def test_list_shows_specs_as_json(tmp_path: Path) -> None:
    process = run_harness("-p", "fixture_plugin", "list", "metrics", "--json", cwd=tmp_path, env=ENV)
    (score,) = [m for m in load_json(process) if m["name"] == "score"]
    assert score["unit"] == "1" and score["direction"] == "higher"
    process = run_harness("-p", "fixture_plugin", "list", "algorithms", "--json", cwd=tmp_path, env=ENV)
    names = {a["name"]: a for a in load_json(process)}
    assert names["random"]["params"] == {"scale": 1.0} and names["random"]["task_kinds"] == ["toy"]


def test_plugins_add_commands_but_cannot_take_core_ones(tmp_path: Path) -> None:
    process = run_harness("-p", "cli_plugin", "hello", "world", cwd=tmp_path, env=ENV)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "hello world"
    listing = run_harness("-p", "cli_plugin", "plugins", "--json", cwd=tmp_path, env=ENV)
    (record,) = [r for r in load_json(listing) if r["name"] == "cli_plugin"]
    assert any("'run' is already taken" in p["message"] for p in record["problems"])
    help_text = run_harness("-p", "cli_plugin", "run", "--help", cwd=tmp_path, env=ENV).stdout
    assert "hijacked" not in help_text and "Run SUITE" in help_text
