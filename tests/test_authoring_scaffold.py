"""`harness new-plugin`: the package it writes is complete, lint-clean and keeps the plugin contract."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.authoring.conformance import check_plugin
from harness.authoring.scaffold import create_plugin, render_plugin
from harness.errors import BadInput
from harness.plugins import PluginOptions

REPO = Path(__file__).resolve().parents[1]
HARNESS = [sys.executable, "-m", "harness.cli.main"]


@pytest.fixture(autouse=True)
def restore_worker_registries():
    from harness import plugins

    saved = dict(plugins._WORKER_REGISTRY)
    yield
    plugins._WORKER_REGISTRY.clear()
    plugins._WORKER_REGISTRY.update(saved)


def test_full_package_layout_and_entry_point() -> None:
    files = render_plugin("my-bandits")
    assert set(files) == {
        "pyproject.toml",
        "README.md",
        "harness_my_bandits/__init__.py",
        "harness_my_bandits/plugin.py",
        "harness_my_bandits/algorithm.py",
        "harness_my_bandits/environment.py",
        "harness_my_bandits/metrics.py",
        "harness_my_bandits/suites/my-bandits.toml",
        "tests/test_harness_my_bandits.py",
    }
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "harness-my-bandits"
    assert project["project"]["entry-points"]["harness"] == {"my-bandits": "harness_my_bandits.plugin"}
    assert project["tool"]["setuptools"]["package-data"] == {"harness_my_bandits": ["suites/*.toml"]}
    assert "-p harness.testing" in project["tool"]["pytest"]["ini_options"]["addopts"]
    suite = tomllib.loads(files["harness_my_bandits/suites/my-bandits.toml"])
    assert suite["name"] == "my-bandits" and suite["metrics"] == ["my_bandits_best_value"]
    assert "harness_suites" in files["harness_my_bandits/plugin.py"]
    assert "harness plugins check my-bandits" in files["README.md"]


@pytest.mark.parametrize(
    ("kinds", "modules", "has_suite"),
    [
        (["algorithm"], {"algorithm"}, False),
        (["environment", "metric"], {"environment", "metrics"}, False),
        (["metric"], {"metrics"}, False),
        (["algorithm", "environment"], {"algorithm", "environment"}, True),
    ],
)
def test_kinds_select_the_example_specs(kinds: list[str], modules: set[str], has_suite: bool) -> None:
    files = render_plugin("picky", kinds)
    written = {Path(path).stem for path in files if path.startswith("harness_picky/") and path.endswith(".py")}
    assert written == modules | {"__init__", "plugin"}
    assert ("harness_picky/suites/picky.toml" in files) is has_suite
    hooks = files["harness_picky/plugin.py"]
    for kind in ("algorithm", "environment", "metric"):
        assert (f"def harness_{kind}s()" in hooks) is (kind in kinds)


def test_generated_code_is_lint_clean(tmp_path: Path) -> None:
    for index, kinds in enumerate((["algorithm", "environment", "metric"], ["metric"], ["algorithm"])):
        create_plugin(f"lint-{index}", tmp_path, kinds)
    ruff = Path(sys.executable).with_name("ruff")
    for command in ([str(ruff), "check", str(tmp_path)], [str(ruff), "format", "--check", str(tmp_path)]):
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize("kinds", [["algorithm", "environment", "metric"], ["environment"], ["metric"]])
def test_generated_plugin_keeps_the_contract(kinds: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = create_plugin("fresh-start", tmp_path, kinds)
    monkeypatch.syspath_prepend(str(root))
    report = check_plugin(
        "harness_fresh_start.plugin",
        options=PluginOptions(extra_modules=("harness_fresh_start.plugin",), autoload=False),
        results_dir=tmp_path / "results",
    )
    assert report.ok, report.format()
    assert not [item for item in report.items if item.status == "warning"], report.format()
    statuses = {item.check: item.status for item in report.items}
    if "algorithm" in kinds:
        assert statuses["runs one smoke cell"] == "passed"
        assert statuses["same seed gives the same result"] == "passed"
        assert statuses["suite expands"] == "passed"


def test_bad_names_and_existing_folders_are_refused(tmp_path: Path) -> None:
    for bad in ("My_Plugin", "1plugin", "two--dashes", "trailing-", "dots.in.name"):
        with pytest.raises(BadInput, match="lower-case words"):
            render_plugin(bad)
    with pytest.raises(BadInput, match="--kind must be one or more of"):
        render_plugin("fine", ["optimizer"])
    create_plugin("taken", tmp_path)
    with pytest.raises(BadInput, match="already exists and is not empty; choose another --dir or pass --force"):
        create_plugin("taken", tmp_path)
    assert create_plugin("taken", tmp_path, force=True) == tmp_path / "harness-taken"
    # A name given with the distribution prefix names the same plugin.
    assert "harness-taken" in render_plugin("harness-taken")["pyproject.toml"]


def test_new_plugin_command_line(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli.main",
            "new-plugin",
            "cli-made",
            "--kind",
            "metric",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "harness plugins check cli-made" in completed.stdout
    assert (tmp_path / "harness-cli-made" / "harness_cli_made" / "metrics.py").is_file()
    again = subprocess.run(
        [*HARNESS, "new-plugin", "cli-made", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
