"""`harness plugins check` as a library: what the contract check finds, and that each failure says what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from harness.authoring.conformance import ConformanceReport, check_plugin
from harness.cli.authoring import check_command
from harness.errors import BadInput
from harness.plugins import PluginOptions

FIXTURES = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def restore_worker_registries():
    """Checks cache their registry for in-process cells; leave no fixture plugin behind for other tests."""
    from harness import plugins

    saved = dict(plugins._WORKER_REGISTRY)
    yield
    plugins._WORKER_REGISTRY.clear()
    plugins._WORKER_REGISTRY.update(saved)


@pytest.fixture(autouse=True)
def fixture_plugins_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))


def only(*modules: str) -> PluginOptions:
    """Discover just these fixture modules (no installed plugins), as `harness -p ...` would."""
    return PluginOptions(extra_modules=modules, autoload=False)


def items(report: ConformanceReport, check: str, status: str | None = None) -> dict[str, object]:
    return {
        item.subject: item for item in report.items if item.check == check and (status is None or item.status == status)
    }


def test_a_conforming_plugin_passes_every_check(tmp_path: Path) -> None:
    report = check_plugin("authoring_good", options=only("authoring_good"), results_dir=tmp_path)
    assert report.ok, report.format()
    passed = {(item.check, item.subject) for item in report.items if item.status == "passed"}
    for expected in [
        ("loads", "plugin"),
        ("declares hook API version", "plugin"),
        ("imports nothing heavy", "plugin"),
        ("names unique", "plugin"),
        ("spec complete", "algorithm 'authoring-walk'"),
        ("parameters have defaults and validate", "algorithm 'authoring-walk'"),
        ("declares unit and direction", "metric 'authoring_distance'"),
        ("callable signature", "environment 'authoring-line'"),
        ("runs one smoke cell", "'authoring-walk' on 'authoring-line'"),
        ("same seed gives the same result", "'authoring-walk' on 'authoring-line'"),
    ]:
        assert expected in passed, report.format()
    smoke = items(report, "runs one smoke cell")["'authoring-walk' on 'authoring-line'"]
    assert "authoring_distance=" in smoke.message  # the plugin's metric was computed on the cell


def test_each_flaw_is_reported_on_its_spec_with_a_fix(tmp_path: Path) -> None:
    report = check_plugin("authoring_flawed", options=only("authoring_flawed"), results_dir=tmp_path)
    assert not report.ok
    failed = {(item.check, item.subject): item for item in report.failures}

    determinism = failed[("same seed gives the same result", "'authoring-unseeded' on 'authoring-box'")]
    assert "outcome draw" in determinism.message and "context.numpy_rng" in determinism.fix

    signature = failed[("callable signature", "algorithm 'authoring-bad-signature'")]
    assert "run(environment=..., params=..., context=...)" in signature.message
    assert "def positional_only(*, environment, params, context)" in signature.fix

    missing = failed[("callable imports", "algorithm 'authoring-missing-module'")]
    assert "authoring_no_such_module" in missing.message and "ModuleNotFoundError" in missing.message

    choice = failed[("parameter default validates", "algorithm 'authoring-bad-choice' parameter 'mode'")]
    assert "'fast' is not one of ['slow', 'medium']" in choice.message and choice.fix

    # Flaws that are warnings, not failures: an untyped parameter, a missing description, no API version.
    warnings = {(item.check, item.subject) for item in report.items if item.status == "warning"}
    assert ("parameter typed", "environment 'authoring-box' parameter 'anything'") in warnings
    assert ("parameter documented", "environment 'authoring-box' parameter 'anything'") in warnings
    assert ("declares hook API version", "plugin") in warnings

    # An algorithm whose task kind no installed environment provides is skipped, saying what to install.
    nowhere = items(report, "runs one smoke cell", "skipped")["algorithm 'authoring-no-environment'"]
    assert "'authoring-nowhere'" in nowhere.message and "install a plugin" in nowhere.fix
    # Specs without flaws in the same plugin still pass.
    assert ("spec complete", "algorithm 'authoring-unseeded'") not in failed
    assert items(report, "runs one smoke cell", "passed")["'authoring-unseeded' on 'authoring-box'"]


def test_a_metric_returning_the_wrong_type_fails_the_smoke_cell(tmp_path: Path) -> None:
    report = check_plugin("authoring_text_metric", options=only("authoring_text_metric"), results_dir=tmp_path)
    failure = items(report, "runs one smoke cell", "failed")["'authoring-text-algo' on 'authoring-text-env'"]
    assert "'one'" in failure.message
    assert failure.fix


def test_heavy_imports_at_listing_time_are_named(tmp_path: Path) -> None:
    report = check_plugin("authoring_heavy", options=only("authoring_heavy"), run_cells=False)
    heavy = items(report, "imports nothing heavy", "failed")["plugin"]
    assert "gymnasium" in heavy.message and "'module:function'" in heavy.fix


def test_problems_found_by_the_loader_become_failures_with_fixes() -> None:
    report = check_plugin("authoring_raises_at_import", options=only("authoring_raises_at_import"))
    [failure] = report.failures
    assert failure.subject == "plugin (import)"
    assert "RuntimeError: authoring fixture: cannot import" in failure.message
    assert "Traceback" in failure.message and "python -c 'import authoring_raises_at_import'" in failure.fix

    report = check_plugin("authoring_wrong_types", options=only("authoring_wrong_types"), run_cells=False)
    subjects = {item.subject for item in report.failures}
    assert {"plugin (hook harness_algorithms)", "plugin (hook harness_environments)"} <= subjects
    assert any("docs/plugins.md#harness_metrics" in item.fix for item in report.failures)

    report = check_plugin("authoring_misspelled", options=only("authoring_misspelled"), run_cells=False)
    [failure] = report.failures
    assert "harness_algorithm" in failure.message and "harness/hookspecs.py" in failure.fix


def test_a_name_claimed_by_two_plugins_fails_both(tmp_path: Path) -> None:
    options = only("authoring_dup_a", "authoring_dup_b", "authoring_good")
    for plugin, other in (("authoring_dup_a", "authoring_dup_b"), ("authoring_dup_b", "authoring_dup_a")):
        report = check_plugin(plugin, options=options, results_dir=tmp_path)
        clash = items(report, "names unique", "failed")["algorithm 'authoring-dup-algo'"]
        assert repr(other) in clash.message and "neither is used" in clash.message
        # Its other algorithm is unaffected and runs on the good plugin's environment.
        letter = plugin[-1]
        assert items(report, "runs one smoke cell", "passed")[f"'authoring-only-{letter}' on 'authoring-line'"]


def test_unknown_plugin_is_bad_input_listing_close_matches() -> None:
    with pytest.raises(BadInput, match=r"no plugin named 'authoring_godo'.*Did you mean 'authoring_good'"):
        check_plugin("authoring_godo", options=only("authoring_good"))


def test_the_report_serialises_to_json(tmp_path: Path) -> None:
    report = check_plugin("authoring_good", options=only("authoring_good"), results_dir=tmp_path)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["plugin"] == "authoring_good"
    assert data["counts"]["failed"] == 0 and data["counts"]["passed"] == len(data["items"])


def _invoke(*args: str, modules: tuple[str, ...]) -> object:
    # The root `harness` group hands its -p options to subcommands through its state object.
    state = SimpleNamespace(plugin_options=lambda: only(*modules))
    return CliRunner().invoke(check_command, list(args), obj=state)


def test_check_command_exit_codes_and_json() -> None:
    good = _invoke("authoring_good", "--json", modules=("authoring_good",))
    assert good.exit_code == 0, good.output
    assert json.loads(good.output)["ok"] is True

    flawed = _invoke("authoring_flawed", "--specs-only", modules=("authoring_flawed",))
    assert flawed.exit_code == 1
    assert "does not conform" in flawed.output
    assert "fix: define it as def positional_only(*, environment, params, context)" in " ".join(flawed.output.split())

    unknown = _invoke("nothing-like-it", modules=("authoring_good",))
    assert isinstance(unknown.exception, BadInput)  # `harness` turns BadInput into exit code 2
