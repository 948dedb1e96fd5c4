"""Third-party plugins in a fresh virtual environment: found purely through their entry points, checked and run.

The environment holds a wheel of the harness built from this checkout (so package data such as the scaffold's
templates must really be packaged), the example plugin `examples/harness-example-bandits` and a plugin written
by `harness new-plugin`. Their dependencies (pluggy, mlflow, numpy, pytest ...) come from the project's
environment through a `.pth` file pointing at a folder of links to them; installed first-party plugins and the
editable harness are left out, so nothing but the entry points of the packages installed here can be found.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "harness-example-bandits"
pytestmark = pytest.mark.slow


def _is_plugin_or_harness(entry: Path) -> bool:
    name = entry.name
    if name.endswith(".pth") or name.startswith(("__editable__", "harness", "_harness")):
        return True
    if name.endswith(".dist-info"):
        entry_points = entry / "entry_points.txt"
        return entry_points.is_file() and "[harness]" in entry_points.read_text(encoding="utf-8")
    return False


def _dependency_view(target: Path) -> Path:
    """Links to every package of this environment except the harness itself and harness plugins."""
    target.mkdir()
    packages = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    for entry in packages.iterdir():
        if not _is_plugin_or_harness(entry):
            (target / entry.name).symlink_to(entry)
    return target


def _run(command: list[str | Path], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HARNESS_", "PYTEST"))}
    completed = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return completed


def _ok(completed: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert completed.returncode == 0, f"{completed.args}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    return completed


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fresh-venv")
    environment = root / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _ok(_run([base_python, "-m", "venv", "--without-pip", environment], cwd=root))
    python = environment / "bin" / "python"
    own_site = Path(
        _ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root)).stdout.strip()
    )
    (own_site / "_project_dependencies.pth").write_text(f"{_dependency_view(root / 'deps')}\n")

    # A wheel of the harness from a copy of this checkout (no build files land in the repository).
    source = root / "harness-src"
    shutil.copytree(REPO / "harness", source / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", source)
    readme = REPO / "README.md"
    (source / "README.md").write_text(readme.read_text(encoding="utf-8") if readme.exists() else "# harness\n")
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    _ok(_run([*pip, source], cwd=root))

    example = root / "harness-example-bandits"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    _ok(_run([*pip, example], cwd=root))

    harness = environment / "bin" / "harness"
    _ok(_run([harness, "new-plugin", "fresh-quadratic", "--dir", root], cwd=root))
    generated = root / "harness-fresh-quadratic"
    _ok(_run([*pip, "-e", generated], cwd=root))
    return {"root": root, "python": python, "harness": harness, "example": example, "generated": generated}


def test_plugins_are_found_only_through_their_entry_points(venv: dict[str, Path]) -> None:
    listed = json.loads(_ok(_run([venv["harness"], "plugins", "--json"], cwd=venv["root"])).stdout)
    by_name = {record["name"]: record for record in listed}
    assert set(by_name) == {"example-bandits", "fresh-quadratic"}, by_name.keys()  # nothing else leaks in
    example = by_name["example-bandits"]
    assert example["source"] == "entry point" and example["status"] == "loaded"
    assert example["distribution"] == "harness-example-bandits" and example["version"] == "1.0.0"
    assert example["provides"]["algorithms"] == ["bandit-epsilon-greedy", "bandit-ucb1"]
    assert by_name["fresh-quadratic"]["provides"]["suites"] == ["fresh-quadratic"]
    # The harness really is the installed wheel, not this checkout.
    where = _ok(_run([venv["python"], "-c", "import harness; print(harness.__file__)"], venv["root"])).stdout
    assert str(REPO) not in where


def _plugins_check(venv: dict[str, Path], name: str) -> subprocess.CompletedProcess[str]:
    completed = _run([venv["harness"], "plugins", "check", name, "--json"], cwd=venv["root"])
    if completed.returncode == 2 and "No such command" in completed.stderr:
        # Until `check` is added to the `plugins` group of harness/cli/main.py: the same click command.
        script = "import sys; from harness.cli.authoring import check_command; check_command.main(sys.argv[1:])"
        completed = _run([venv["python"], "-c", script, name, "--json"], cwd=venv["root"])
    return completed


@pytest.mark.parametrize("plugin", ["example-bandits", "fresh-quadratic"])
def test_plugins_check_passes(venv: dict[str, Path], plugin: str) -> None:
    report = json.loads(_ok(_plugins_check(venv, plugin)).stdout)
    assert report["ok"] is True and report["counts"]["failed"] == 0, report
    checks = {item["check"] for item in report["items"] if item["status"] == "passed"}
    assert {"runs one smoke cell", "same seed gives the same result", "suite expands"} <= checks


@pytest.mark.parametrize(
    ("suite", "cells", "metric"),
    [("example-bandits", 4, "bandit_regret"), ("fresh-quadratic", 1, "fresh_quadratic_best_value")],
)
def test_shipped_suite_runs(venv: dict[str, Path], suite: str, cells: int, metric: str) -> None:
    # --no-tracking: the runner, workers and journal are exercised; MLflow logging has its own tests in the
    # core, and creating a fresh SQLite store costs tens of seconds on the CI machine.
    work = venv["root"] / f"run-{suite}"
    work.mkdir()
    command = [venv["harness"], "--results-dir", work / "results", "run", suite, "--profile", "smoke"]
    summary = json.loads(_ok(_run([*command, "--no-tracking", "--json"], cwd=work)).stdout)
    assert summary["suite"] == suite and len(summary["cells"]) == cells
    assert all(cell["status"] == "ok" for cell in summary["cells"]), summary
    assert all(metric in cell["metrics"] and cell["metrics"][metric] >= 0 for cell in summary["cells"])
    journal = [json.loads(line) for line in Path(summary["journal"]).read_text().splitlines() if line.strip()]
    assert len([record for record in journal if "cell" in json.dumps(record)]) >= cells


def test_plugin_authors_tests_pass_with_harness_testing(venv: dict[str, Path]) -> None:
    for package in (venv["example"], venv["generated"]):
        completed = _run([venv["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package)
        _ok(completed)
        assert " passed" in completed.stdout and "failed" not in completed.stdout
