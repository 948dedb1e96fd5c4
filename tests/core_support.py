"""Shared test helpers: run the real `harness` command in a subprocess against a temporary results folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
