"""A library under test in its own git repository, and the real `harness` command run against it.

``toylib`` has one algorithm that sleeps a module constant and reports a quality constant; each commit changes a
constant, so a test can make a slowdown or a quality drop appear at a known commit. Nights are real ``harness``
runs with ``--repo`` (the suite file names the repository), so every run records that commit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOYLIB = '''
"""The library under test: its speed and quality are constants a commit changes."""
SECONDS = {seconds}
QUALITY = {quality}
'''

PLUGIN = """
import time

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"


def run_work(*, environment, params, context):
    import toylib

    time.sleep(toylib.SECONDS)
    return {"quality": toylib.QUALITY}


def make_env(*, params, context):
    return None


@hookimpl
def harness_algorithms():
    return [AlgorithmSpec(name="work", version="1", description="calls the library", task_kinds=("toy",),
                          run="toylib_plugin:run_work")]


@hookimpl
def harness_environments():
    return [EnvironmentSpec(name="bench", version="1", description="nothing", task_kind="toy",
                            make="toylib_plugin:make_env")]


@hookimpl
def harness_metrics():
    return [MetricSpec(name="quality", version="1", description="the library's quality", unit="1",
                       direction="higher", threshold=0.05, compute=outcome_value("quality"))]
"""

SUITE = """
name = "toy-life"
description = "a library's speed and quality, nightly"
seeds = [0, 1, 2, 3, 4, 5]
metrics = ["wall_time_s", "quality"]
algorithms = ["work"]
environments = ["bench"]
repository = "repo"

[profiles.smoke]
"""


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_toylib(repo: Path, toylib: str, message: str) -> str:
    """Commit ``toylib`` as ``toylib.py`` (an empty commit when it is unchanged); the new commit's SHA."""
    (repo / "toylib.py").write_text(toylib)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message, "--allow-empty")
    return git(repo, "rev-parse", "HEAD")


def commit(repo: Path, seconds: float, quality: float, message: str) -> str:
    return commit_toylib(repo, TOYLIB.format(seconds=seconds, quality=quality), message)


def make_project(tmp_path: Path, plugin: str = PLUGIN, suite: str = SUITE) -> Path:
    """``tmp_path`` with ``repo/`` (an empty git repository holding the plugin) and ``toy.toml``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "toylib_plugin.py").write_text(plugin)
    (tmp_path / "toy.toml").write_text(suite)
    return tmp_path


def harness(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command; --results-dir after the command name, as users type it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project / "repo"), env.get("PYTHONPATH")]))
    env.pop("HARNESS_TRACKING_URI", None)
    command = [sys.executable, "-m", "harness.cli.main", "-p", "toylib_plugin", *args, "--results-dir", "results"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
