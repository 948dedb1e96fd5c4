"""Shared test helpers: run the real `harness` command in a subprocess against a temporary results folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MLFLOW = str(Path(sys.executable).with_name("mlflow"))

TESTS = Path(__file__).parent
REPO = TESTS.parent
FIXTURE_PLUGINS = TESTS / "plugins"
HARNESS = [sys.executable, "-m", "harness.cli.main"]


def harness_env(extra_path: list[Path] | None = None, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in (extra_path or [])] + [str(FIXTURE_PLUGINS)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("HARNESS_TRACKING_URI", None)
    env.update(overrides)
    return env


def run_harness(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HARNESS, *args], cwd=cwd, env=env or harness_env(), capture_output=True, text=True, timeout=timeout
    )


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load_json(process: subprocess.CompletedProcess[str]):
    assert process.stdout.strip(), process.stderr
    return json.loads(process.stdout)


def mlflow_cell_runs(tracking_uri: str, suite: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(suite)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`harness.kind` = 'cell'", max_results=5000
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` with a SQLite backend store and a served artifact root, started and stopped at will."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.store / "server.log").open("a")
        self.process = subprocess.Popen(
            [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.store / 'mlflow.db'}",
             "--artifacts-destination", str(self.store / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # The server's background job runner (a pool of huey consumers) is not needed for tracking.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
        deadline = time.time() + 120
        while True:
            assert self.process.poll() is None, (self.store / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            assert time.time() < deadline, "mlflow server did not answer /health in 120 s"
            time.sleep(0.2)

    def kill(self) -> None:
        """The server goes away at once (SIGKILL to its process group), as a crashed or unplugged host would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None
