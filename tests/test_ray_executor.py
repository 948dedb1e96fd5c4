"""The Ray executor on real Ray clusters on loopback: a `ray start --head` cluster joined by address, and a
two-node `ray.cluster_utils.Cluster` that loses a node mid-run.

Starting Ray takes seconds, so each cluster is started once per module and shared. Every driver is the real
`harness` command in a subprocess; teardown ends only the processes these fixtures started (their process
group, or the Cluster's own nodes), never `ray stop`, which would stop every Ray instance on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_support import HARNESS, harness_env, load_json, mlflow_cell_runs, run_harness

RAY = str(Path(sys.executable).with_name("ray"))


def test_progress_from_ray_workers_reaches_the_driver(tmp_path: Path, ray_head: str) -> None:
    write_suite(tmp_path, "progress", 'algorithms = [{name = "progressing", params = {steps = 40, step_s = 0.2}}]\n'
                'environments = ["constant"]\n')  # fmt: skip
    process = run_harness("-p", "fixture_plugin", "-p", "record_plugin", "run", "progress.toml", "--executor", "ray",
                          "--address", ray_head, "--no-tracking", "--json", cwd=tmp_path, env=driver_env())  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert load_json(process)["counts"]["ok"] == 1
    status = [line for line in process.stderr.splitlines() if "running:" in line]
    assert any("progressing/constant/seed=0" in line and "/40 training" in line for line in status), process.stderr


# An algorithm that writes "cell-key pid node-id" when it starts, so a test can kill exactly that worker or node.
PROBE_PLUGIN = '''"""Written by tests/test_ray_executor.py."""
import os
import time

from harness import AlgorithmSpec, Param, Resources, hookimpl


def run_probe(*, environment, params, context):
    import ray

    node = ray.get_runtime_context().get_node_id()
    with open(params["path"], "a") as handle:
        handle.write(f"{context.cell['key']} {os.getpid()} {node}\\n")
    time.sleep(params["seconds"])
    return {"score": environment.value + context.seed}


@hookimpl
def harness_algorithms():
    return [
        AlgorithmSpec(
            name="probe",
            version="1",
            description="records where it runs",
            task_kinds=("toy",),
            run="ray_probe_plugin:run_probe",
            params=(Param("path", ""), Param("seconds", 0.0)),
        ),
        AlgorithmSpec(
            name="probe-gpu",
            version="1",
            description="declares a GPU",
            task_kinds=("toy",),
            run="ray_probe_plugin:run_probe",
            params=(Param("path", ""), Param("seconds", 0.0)),
            resources=Resources(gpus=1.0),
        ),
    ]
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def end_process_group(process: subprocess.Popen) -> None:
    """SIGKILL to the group this fixture started: the head and every process it spawned, at once."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ray-plugins")
    (directory / "ray_probe_plugin.py").write_text(PROBE_PLUGIN)
    return directory


# Ray's token authentication, with a token of the tests' own (not the user's ~/.ray/auth_token). A driver
# joining by address must opt in with RAY_AUTH_MODE=token, as users are told in docs/scaling.md.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def driver_env(*extra_path: Path) -> dict[str, str]:
    return harness_env(list(extra_path), HARNESS_DISABLE_PLUGIN_AUTOLOAD="1", **RAY_AUTH)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """`ray start --head` on 127.0.0.1 with 2 CPUs; yields its address."""
    port = free_port()
    # Ray's socket paths must stay under the AF_UNIX length limit: a short temporary folder of its own.
    temp_dir = tempfile.mkdtemp(prefix="hray", dir="/tmp")
    log_path = Path(temp_dir) / "ray-start.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **RAY_AUTH},
        )  # fmt: skip
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert process.poll() is None, f"ray start failed:\n{log_path.read_text()}"
            assert time.time() < deadline, f"ray start did not come up in 120 s:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        end_process_group(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_suite(directory: Path, name: str, body: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "ray test suite"\nmetrics = ["score"]\n{body}')
    return path


def journal_results(results_dir: Path) -> list[dict]:
    results = []
    for journal in (results_dir / "journal").glob("*.jsonl"):
        for line in journal.read_text().splitlines():
            event = json.loads(line)
            if event["type"] == "result":
                results.append(event["record"])
    return results


def test_ray_cluster_joined_by_address_gives_the_local_executors_metrics(tmp_path: Path, ray_head: str) -> None:
    write_suite(
        tmp_path,
        "same",
        """
seeds = [0, 1]
algorithms = [{name = "random", sweep = {scale = [1.0, 2.0]}}, "noop"]
environments = ["constant"]
[profiles.smoke]
budget = {steps = 3}
""",
    )
    env = driver_env()
    local = run_harness("-p", "fixture_plugin", "--results-dir", "local", "run", "same.toml", "-j", "2", "--json",
                        "--no-tracking", cwd=tmp_path, env=env)  # fmt: skip
    assert local.returncode == 0, local.stderr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    on_ray = run_harness("-p", "fixture_plugin", "--results-dir", "ray", "run", "same.toml", "--executor", "ray",
                         "--address", ray_head, "--tracking-uri", uri, "--json", cwd=tmp_path, env=env)  # fmt: skip
    assert on_ray.returncode == 0, on_ray.stderr
    local_metrics = {cell["key"]: cell["metrics"] for cell in load_json(local)["cells"]}
    ray_metrics = {cell["key"]: cell["metrics"] for cell in load_json(on_ray)["cells"]}
    assert len(local_metrics) == 6
    assert ray_metrics == local_metrics
    assert len({m["score"] for key, m in local_metrics.items()}) == 5  # random draws differ; noop gives 1.0 twice
    # The driver logged every cell (workers have no database access), once, with the same values.
    runs = mlflow_cell_runs(uri, "same")
    assert sorted(run.data.tags["harness.cell_key"] for run in runs) == sorted(local_metrics)
    assert {run.data.tags["harness.cell_key"]: run.data.metrics["score"] for run in runs} == {
        key: m["score"] for key, m in local_metrics.items()
    }
    assert all(run.data.tags["harness.worker"] for run in runs)


def test_worker_killed_mid_cell_is_retried_and_the_run_completes(
    tmp_path: Path, ray_head: str, plugin_dir: Path
) -> None:
    starts = tmp_path / "starts.txt"
    write_suite(
        tmp_path,
        "victim",
        f"""
seeds = [0, 1, 2]
algorithms = [{{name = "probe", params = {{path = "{starts}", seconds = 1.5}}}}]
environments = ["constant"]
""",
    )
    env = driver_env(plugin_dir)
    driver = subprocess.Popen(
        [*HARNESS, "-p", "fixture_plugin", "-p", "ray_probe_plugin", "run", "victim.toml", "--executor", "ray",
         "--address", ray_head, "--no-tracking", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (starts.exists() and starts.read_text().strip()):
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no cell started on the Ray cluster in 120 s"
            time.sleep(0.05)
        victim_key, victim_pid, _ = starts.read_text().splitlines()[0].split()
        os.kill(int(victim_pid), signal.SIGKILL)  # the worker process, mid-cell (it sleeps 1.5 s)
        stdout, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr
    assert "died mid-cell" in stderr and "retrying" in stderr
    summary = json.loads(stdout)
    assert summary["counts"] == {"ok": 3, "failed": 0, "skipped": 0}
    records = journal_results(tmp_path / "results")
    keys = sorted(cell["key"] for cell in summary["cells"])
    assert sorted(record["cell"]["key"] for record in records) == keys and len(set(keys)) == 3
    attempts = {record["cell"]["key"]: record["attempt"] for record in records}
    assert attempts.pop(victim_key) == 2 and set(attempts.values()) == {1}
    # The killed cell really ran twice, in two different processes; the others once.
    started = Counter(line.split()[0] for line in starts.read_text().splitlines())
    assert started[victim_key] == 2 and sum(started.values()) == 4
    pids = [line.split()[1] for line in starts.read_text().splitlines() if line.startswith(victim_key)]
    assert pids[0] == victim_pid and pids[1] != victim_pid


def test_driver_killed_mid_run_then_resumed_on_ray_logs_every_cell_once(
    tmp_path: Path, ray_head: str, plugin_dir: Path
) -> None:
    starts = tmp_path / "starts.txt"
    write_suite(tmp_path, "resume", f"""
seeds = [0, 1, 2, 3, 4, 5]
algorithms = [{{name = "probe", params = {{path = "{starts}", seconds = 1.0}}}}]
environments = ["constant"]
""")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [*HARNESS, "-p", "fixture_plugin", "-p", "ray_probe_plugin", "run", "resume.toml", "--executor", "ray",
               "--address", ray_head, "--tracking-uri", uri, "--json"]  # fmt: skip
    env = driver_env(plugin_dir)
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = tmp_path / "results" / "journal" / "resume--smoke.jsonl"
    try:
        deadline = time.time() + 120
        while not (journal.exists() and '"type":"result"' in journal.read_text()):
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "no result in 120 s"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # the driver dies with cells still running on the cluster
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = {record["cell"]["key"] for record in journal_results(tmp_path / "results")}
    assert 1 <= len(done_before) < 6
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["already_finished"] == len(done_before)
    assert not done_before & {cell["key"] for cell in summary["cells"]}  # finished cells were not run again
    records = journal_results(tmp_path / "results")
    keys = [record["cell"]["key"] for record in records]
    assert len(keys) == len(set(keys)) == 6
    assert sorted(run.data.tags["harness.cell_key"] for run in mlflow_cell_runs(uri, "resume")) == sorted(keys)


def test_timeout_and_a_cell_no_node_can_hold_are_recorded_not_waited_for(
    tmp_path: Path, ray_head: str, plugin_dir: Path
) -> None:
    write_suite(tmp_path, "limits", """
seeds = [0]
timeout_s = 3
algorithms = [{name = "sleep", params = {seconds = 60.0}}, "probe-gpu", "noop"]
environments = ["constant"]
""")  # fmt: skip
    started = time.time()
    process = run_harness("-p", "fixture_plugin", "-p", "ray_probe_plugin", "run", "limits.toml", "--executor",
                          "ray", "--address", ray_head, "--no-tracking", "--json", cwd=tmp_path,
                          env=driver_env(plugin_dir))  # fmt: skip
    assert time.time() - started < 60
    assert process.returncode == 1, process.stderr
    cells = {cell["label"].split("/")[0]: cell for cell in load_json(process)["cells"]}
    assert cells["sleep"]["status"] == "failed" and cells["sleep"]["error"] == "timeout: exceeded 3 s"
    assert cells["probe-gpu"]["status"] == "skipped"
    assert "no node of the Ray cluster has a GPU" in cells["probe-gpu"]["error"]
    assert cells["noop"]["status"] == "ok"


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[tuple]:
    """A head that runs nothing and two 1-CPU worker nodes, all on this machine."""
    from ray.cluster_utils import Cluster

    # Fast health checks, so a lost node is declared dead in about a second, not thirty.
    system_config = {"health_check_period_ms": 300, "health_check_failure_threshold": 3}
    # Nodes started from this process run without token authentication (a loopback test cluster); Ray would
    # otherwise switch this process's environment to token mode behind the test's back.
    saved = {key: os.environ.get(key) for key in RAY_AUTH}
    os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": system_config},
    )
    try:
        nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        for node in list(cluster.worker_nodes):
            cluster.remove_node(node, allow_graceful=False)  # a test cluster: no need to wait for clean exits
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_cluster_losing_a_node_mid_run_completes_with_every_cell_once(
    tmp_path: Path, two_node_cluster: tuple, plugin_dir: Path
) -> None:
    cluster, (doomed, survivor) = two_node_cluster
    starts = tmp_path / "starts.txt"
    write_suite(
        tmp_path,
        "lost",
        f"""
seeds = [0, 1, 2, 3]
algorithms = [{{name = "probe", params = {{path = "{starts}", seconds = 1.5}}}}]
environments = ["constant"]
""",
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**driver_env(plugin_dir), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_AUTH_TOKEN")
    driver = subprocess.Popen(
        [*HARNESS, "-p", "fixture_plugin", "-p", "ray_probe_plugin", "run", "lost.toml", "--executor", "ray",
         "--address", cluster.address, "--tracking-uri", uri, "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while doomed.node_id not in (starts.read_text() if starts.exists() else ""):
            assert driver.poll() is None, driver.communicate()
            assert time.time() < deadline, "no cell started on the node to be removed in 120 s"
            time.sleep(0.05)
        cluster.remove_node(doomed)  # kills its raylet and workers mid-cell
        stdout, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr
    summary = json.loads(stdout)
    keys = sorted(cell["key"] for cell in summary["cells"])
    assert summary["counts"] == {"ok": 4, "failed": 0, "skipped": 0} and len(set(keys)) == 4
    records = journal_results(tmp_path / "results")
    assert sorted(record["cell"]["key"] for record in records) == keys
    retried = {record["cell"]["key"] for record in records if record["attempt"] > 1}
    start_lines = [line.split() for line in starts.read_text().splitlines()]
    # The cell running on the node when it went ran again. Under load, Ray may also have queued another cell's
    # lease at that node before it was declared dead: that cell is lost with the node too, and retried as well.
    assert retried
    for key in keys:
        nodes = [node for started, _, node in start_lines if started == key]
        if key in retried:  # each retry ran to the end on the survivor; only the lost node ever failed a cell
            assert nodes[-1] == survivor.node_id and set(nodes[:-1]) <= {doomed.node_id}, (key, nodes)
        else:
            assert len(nodes) == 1, (key, nodes)
    runs = mlflow_cell_runs(uri, "lost")
    assert sorted(run.data.tags["harness.cell_key"] for run in runs) == keys
    assert {run.data.tags["harness.cell_key"]: run.data.metrics["score"] for run in runs} == {
        cell["key"]: cell["metrics"]["score"] for cell in summary["cells"]
    }
