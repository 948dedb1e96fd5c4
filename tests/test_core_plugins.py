"""Plugin discovery: entry points of installed packages, failure isolation, duplicates, strict mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from core_support import TESTS, harness_env, load_json, run_harness

PACKAGES = TESTS / "plugins" / "packages"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Really install the fixture packages (pip --target): their entry points are all the harness sees."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *(str(PACKAGES / name) for name in ("ep_good", "ep_broken", "ep_dup_a", "ep_dup_b", "ep_badhook")),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def plugins_json(installed: Path, workdir: Path, *args: str, **env: str):
    process = run_harness(*args, "plugins", "--json", cwd=workdir, env=harness_env([installed], **env))
    return process, {record["name"]: record for record in load_json(process)} if process.returncode == 0 else {}


def test_entry_point_discovery_and_failure_isolation(installed: Path, workdir: Path) -> None:
    process, records = plugins_json(installed, workdir)
    assert process.returncode == 0, process.stderr
    good = records["fixture-good"]
    assert good["distribution"] == "harness-fixture-good"
    assert good["version"] == "1.2.3"
    assert good["module"] == "ep_good_plugin"
    assert good["provides"]["algorithms"] == ["ep-linear", "clash"]
    # The broken import is reported with its traceback; the good plugin still works.
    broken = records["fixture-broken"]
    assert broken["status"] == "failed"
    assert broken["problems"][0]["stage"] == "import"
    assert "something-missing" in broken["problems"][0]["message"]
    assert "Traceback" in broken["problems"][0]["traceback"]
    # A misspelled hook is caught by check_pending and named.
    badhook = records["fixture-badhook"]
    assert badhook["status"] == "failed"
    assert "harness_algoritms" in badhook["problems"][0]["message"]


def test_two_distributions_claiming_one_plugin_name_are_both_named(installed: Path, workdir: Path) -> None:
    process = run_harness("plugins", "--json", cwd=workdir, env=harness_env([installed]))
    claims = [r for r in load_json(process) if r["name"] == "fixture-dup"]
    assert {c["distribution"] for c in claims} == {"harness-fixture-dup-a", "harness-fixture-dup-b"}
    for claim in claims:
        assert claim["status"] == "failed"
        message = claim["problems"][0]["message"]
        assert "harness-fixture-dup-a" in message and "harness-fixture-dup-b" in message


def test_duplicate_spec_names_are_refused_naming_both_plugins(installed: Path, workdir: Path) -> None:
    _, records = plugins_json(installed, workdir, "-p", "clash_plugin")
    problems = records["clash_plugin"]["problems"] + records["fixture-good"]["problems"]
    assert any(
        "'clash'" in p["message"] and "fixture-good" in p["message"] and "clash_plugin" in p["message"]
        for p in problems
    )
    (workdir / "s.toml").write_text(
        'name = "s"\ndescription = "d"\nalgorithms = ["clash"]\nenvironments = ["ep-offset"]\n'
    )
    run = run_harness("-p", "clash_plugin", "run", "s.toml", cwd=workdir, env=harness_env([installed]))
    assert run.returncode == 2
    assert "more than one plugin" in run.stderr


def test_strict_mode_turns_problems_into_errors(installed: Path, workdir: Path) -> None:
    process = run_harness("--strict", "plugins", cwd=workdir, env=harness_env([installed]))
    assert process.returncode == 2
    assert "fixture-broken" in process.stderr


def test_disable_and_autoload_switch(installed: Path, workdir: Path) -> None:
    _, records = plugins_json(installed, workdir, "--disable", "fixture-broken")
    assert records["fixture-broken"]["status"] == "disabled"
    assert records["fixture-good"]["status"].startswith("loaded")
    _, records = plugins_json(installed, workdir, "-p", "fixture_plugin", HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    assert list(records) == ["fixture_plugin"]


def test_malformed_specs_are_named_with_the_hook(workdir: Path) -> None:
    process = run_harness(
        "-p",
        "malformed_plugin",
        "-p",
        "fixture_plugin",
        "plugins",
        "--json",
        cwd=workdir,
        env=harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    record = next(r for r in load_json(process) if r["name"] == "malformed_plugin")
    stages = {p["stage"]: p["message"] for p in record["problems"]}
    assert "direction" in stages["hook harness_metrics"]
    assert "list" in stages["hook harness_environments"]
    assert record["provides"]["algorithms"] == ["fine-algorithm"]


def test_installed_plugin_runs_a_suite(installed: Path, workdir: Path) -> None:
    (workdir / "s.toml").write_text(
        'name = "ep"\ndescription = "d"\nseeds = [0, 3]\nmetrics = ["ep-total"]\n'
        'algorithms = ["ep-linear"]\nenvironments = ["ep-offset"]\n'
    )
    process = run_harness("run", "s.toml", "--json", "--no-tracking", cwd=workdir, env=harness_env([installed]))
    assert process.returncode == 0, process.stderr
    totals = sorted(cell["metrics"]["ep-total"] for cell in load_json(process)["cells"])
    assert totals == [1.0, 7.0]


def test_hook_api_version_mismatch_is_refused(tmp_path: Path, workdir: Path) -> None:
    (tmp_path / "future_plugin.py").write_text('HARNESS_API_VERSION = "2.0"\n')
    process = run_harness(
        "-p",
        "future_plugin",
        "plugins",
        "--json",
        cwd=workdir,
        env=harness_env([tmp_path], HARNESS_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    record = next(r for r in load_json(process) if r["name"] == "future_plugin")
    assert record["status"] == "failed"
    assert "2.0" in record["problems"][0]["message"] and "1.0" in record["problems"][0]["message"]
