"""What the driver pays per cell to log it: MLflow over HTTP (`mlflow server`) against the embedded SQLite store.

The driver logs every cell itself, one after another on its logging thread, so this per-cell cost bounds how
many cells per second a suite run can finish, whatever the cluster's size. Each cell is logged exactly as a
run logs it (`MlflowTracker.log_cell`: nested run, params, metrics, a 200-point curve, tags, the cell.json
artifact), alternating the two stores round by round.

    .venv/bin/python benchmarks/scaling/tracking_cost.py --cells 40 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from harness.record import Cell, CellResult, ComponentRef, SuiteRunRecord
from harness.tracking.store import MlflowTracker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store / 'server.db'}", "--artifacts-destination",
         str(store / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return process, uri
        except OSError:
            time.sleep(0.3)
    raise SystemExit("mlflow server did not start in 180 s")


def fake_result(seed: int) -> CellResult:
    algorithm = ComponentRef("iql", "1", "harness-rl", "0.1", {"batch_size": 256, "expectile": 0.7, "beta": 3.0})
    environment = ComponentRef("hopper-medium", "1", "harness-d4rl", "0.1", {"max_episode_steps": 1000})
    budget = {"gradient_steps": 1_000_000, "eval_every": 5000, "eval_episodes": 10}
    metrics = ("normalized_score", "return_mean", "gradient_steps_per_s", "wall_time_s")
    cell = Cell(
        suite="tracking-cost", profile="full", algorithm=algorithm, environment=environment, seed=seed,
        metrics=metrics, budget=budget, timeout_s=None, label=f"iql/hopper-medium/seed={seed}",
        key=Cell.compute_key(algorithm, environment, seed, metrics, budget), task_kind="offline-rl",
    )  # fmt: skip
    now = time.time()
    curve = [("normalized_score", step * 5000, 40.0 + step / 4) for step in range(200)]  # eval every 5000 of 1M
    return CellResult(
        cell=cell, status="ok", metrics={name: 1.0 + seed for name in metrics}, history=curve,
        outcome={"returns": [1.0] * 10}, started_at=now - 3600, finished_at=now, worker="bench:1",
        record_id=uuid.uuid4().hex,
    )  # fmt: skip


def per_cell_ms(tracker: MlflowTracker, cells: int, seed_base: int) -> float:
    run = SuiteRunRecord("tracking-cost", "full", "bench", [], tracker.tracking_uri, suite_info={"suite": "x"})
    parent = tracker.start_parent(run)
    results = [fake_result(seed_base + i) for i in range(cells)]
    started = time.perf_counter()
    for result in results:
        tracker.log_cell(result, parent, {"harness.git_commit": "none"})
    return 1000 * (time.perf_counter() - started) / cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        server, uri = start_server(store)
        try:
            trackers = {
                "mlflow server (HTTP, SQLite behind it)": MlflowTracker(uri),
                "embedded SQLite": MlflowTracker(f"sqlite:///{store / 'embedded.db'}"),
            }
            for tracker in trackers.values():  # warm-up: experiment created, connections open
                per_cell_ms(tracker, 2, 10_000)
            timings: dict[str, list[float]] = {name: [] for name in trackers}
            for round_number in range(args.rounds):
                for name, tracker in trackers.items():
                    timings[name].append(per_cell_ms(tracker, args.cells, round_number * args.cells))
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)
    print(f"{args.cells} cells x {args.rounds} alternating rounds; load average {os.getloadavg()[0]:.2f}\n")
    print("| store | ms per cell, per round | median ms per cell | cells/s the driver can log |")
    print("|---|---|---|---|")
    for name, values in timings.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {rounds} | {median:.0f} | {1000 / median:.1f} |")


if __name__ == "__main__":
    main()
