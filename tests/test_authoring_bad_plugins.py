"""Broken third-party plugins found through real entry points: each is named with its hook and error, the
rest keep working; a name claimed twice names both claimants and neither wins; incompatible hook API versions
are refused naming both versions; deprecations warn.

The entry points are real: each test writes ``*.dist-info`` folders (METADATA + entry_points.txt, what pip
writes) onto ``sys.path``, so ``importlib.metadata`` discovers them exactly as installed distributions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pluggy
import pytest

from harness import HOOK_API_VERSION, AlgorithmSpec, MetricSpec, hookimpl
from harness.authoring.conformance import check_plugin
from harness.authoring.deprecation import (
    DEPRECATED_SPEC_FIELDS,
    Deprecation,
    HarnessDeprecationWarning,
    deprecate_spec_field,
    deprecation_warning,
    warn_deprecated,
    warn_deprecated_spec_fields,
)
from harness.plugins import PluginOptions, load_plugins

FIXTURES = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def restore_worker_registries():
    """Checks cache their registry for in-process cells; leave no fixture plugin behind for other tests."""
    from harness import plugins

    saved = dict(plugins._WORKER_REGISTRY)
    yield
    plugins._WORKER_REGISTRY.clear()
    plugins._WORKER_REGISTRY.update(saved)


def install_entry_points(site: Path, distribution: str, entry_points: dict[str, str]) -> None:
    """What `pip install` leaves behind for discovery: a dist-info folder with the entry points."""
    info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[harness]\n{lines}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site").mkdir()
    return tmp_path / "site"


def authoring_records(registry) -> dict[str, object]:
    return {key: record for key, record in registry.plugins.items() if key.startswith("authoring-")}


def test_broken_plugins_are_named_with_hook_and_error_and_the_rest_work(site: Path, tmp_path: Path) -> None:
    install_entry_points(
        site,
        "authoring-broken-set",
        {
            "authoring-good": "authoring_good",
            "authoring-import": "authoring_raises_at_import",
            "authoring-hook": "authoring_hook_raises",
            "authoring-types": "authoring_wrong_types",
            "authoring-misspelled": "authoring_misspelled",
        },
    )
    registry = load_plugins(PluginOptions())
    records = authoring_records(registry)

    import_problem = records["authoring-import"].problems[0]
    assert records["authoring-import"].status == "failed"
    assert import_problem.stage == "import"
    assert "RuntimeError: authoring fixture: cannot import" in import_problem.message
    assert "authoring_raises_at_import.py" in import_problem.traceback

    hook = records["authoring-hook"]
    [problem] = hook.problems
    assert problem.stage == "hook harness_algorithms"
    assert "KeyError" in problem.message and "no such registry entry" in problem.message
    assert registry.get("metric", "authoring_survivor").plugin is hook  # its other hook still registered

    types = {problem.stage: problem.message for problem in records["authoring-types"].problems}
    assert "must return a list of AlgorithmSpec, got dict" in types["hook harness_algorithms"]
    assert "must return EnvironmentSpec objects, got 'authoring-env-as-text'" in types["hook harness_environments"]
    assert "must return MetricSpec objects" in types["hook harness_metrics"]

    [misspelled] = records["authoring-misspelled"].problems
    assert misspelled.stage == "hook validation" and "harness_algorithm" in misspelled.message

    # The good plugin is untouched by its broken neighbours: it is listed, checked and runs.
    assert records["authoring-good"].status == "loaded" and not records["authoring-good"].problems
    report = check_plugin("authoring-good", results_dir=tmp_path)
    assert report.ok, report.format()


def test_two_plugins_claiming_one_spec_name_both_named_neither_wins(site: Path, tmp_path: Path) -> None:
    install_entry_points(site, "authoring-dup-one", {"authoring-dup-a": "authoring_dup_a"})
    install_entry_points(site, "authoring-dup-two", {"authoring-dup-b": "authoring_dup_b"})
    install_entry_points(site, "authoring-good-dist", {"authoring-good": "authoring_good"})
    registry = load_plugins(PluginOptions())
    for name in ("authoring-dup-a", "authoring-dup-b"):
        [problem] = registry.plugins[name].problems
        assert "'authoring-dup-a' and 'authoring-dup-b'" in problem.message and "neither is used" in problem.message
    with pytest.raises(Exception, match="registered by more than one plugin"):
        registry.get("algorithm", "authoring-dup-algo")
    # Each plugin's unique algorithm still works.
    assert registry.get("algorithm", "authoring-only-a").plugin.name == "authoring-dup-a"
    assert registry.get("algorithm", "authoring-only-b").plugin.name == "authoring-dup-b"


def test_two_distributions_claiming_one_plugin_name_both_named_neither_loaded(site: Path) -> None:
    install_entry_points(site, "authoring-first", {"authoring-same": "authoring_dup_a"})
    install_entry_points(site, "authoring-second", {"authoring-same": "authoring_dup_b"})
    registry = load_plugins(PluginOptions())
    claims = [record for record in registry.plugins.values() if record.name == "authoring-same"]
    assert len(claims) == 2 and all(record.status == "failed" for record in claims)
    for record in claims:
        assert "authoring-first" in record.problems[0].message and "authoring-second" in record.problems[0].message
    assert "authoring-only-a" not in registry.specs["algorithm"]
    assert "authoring-only-b" not in registry.specs["algorithm"]


@pytest.mark.parametrize(
    ("module", "declared"), [("authoring_future_api", "2.0"), ("authoring_newer_minor_api", "1.9")]
)
def test_plugin_for_an_incompatible_hook_api_is_refused_naming_both_versions(
    site: Path, module: str, declared: str
) -> None:
    install_entry_points(
        site, "authoring-versioned", {"authoring-versioned": module, "authoring-good": "authoring_good"}
    )
    registry = load_plugins(PluginOptions())
    record = registry.plugins["authoring-versioned"]
    [problem] = record.problems
    assert record.status == "failed" and problem.stage == "api version"
    assert f"written for hook API {declared}, this harness provides {HOOK_API_VERSION}" in problem.message
    assert registry.plugins["authoring-good"].status == "loaded"
    report = check_plugin("authoring-versioned", run_cells=False)
    [failure] = report.failures
    assert declared in failure.message and HOOK_API_VERSION in failure.message and "HARNESS_API_VERSION" in failure.fix


def test_a_plugin_for_an_older_minor_version_loads(site: Path) -> None:
    (site / "authoring_older_minor.py").write_text(
        "from harness import hookimpl\nHARNESS_API_VERSION = '1.0'\n@hookimpl\ndef harness_suites():\n    return []\n"
    )
    install_entry_points(site, "authoring-older", {"authoring-older": "authoring_older_minor"})
    assert load_plugins(PluginOptions()).plugins["authoring-older"].status == "loaded"


def test_wrong_outcome_type_fails_the_cell_naming_the_algorithm(site: Path, tmp_path: Path) -> None:
    (site / "authoring_list_outcome.py").write_text(
        "from harness import AlgorithmSpec, hookimpl\n"
        "def run(*, environment, params, context):\n    return [1, 2, 3]\n"
        "@hookimpl\ndef harness_algorithms():\n"
        "    return [AlgorithmSpec('authoring-list', '1', 'Returns a list', task_kinds=('authoring-walk',), run=run)]\n"
    )
    install_entry_points(site, "authoring-outcomes", {"authoring-list": "authoring_list_outcome"})
    install_entry_points(site, "authoring-good-dist", {"authoring-good": "authoring_good"})
    report = check_plugin("authoring-list", results_dir=tmp_path)
    failure = next(item for item in report.failures if item.check == "runs one smoke cell")
    assert "algorithm 'authoring-list' returned list; run() must return a mapping" in failure.message
    # The environment it borrowed (from authoring-good) is fine on its own.
    assert check_plugin("authoring-good", results_dir=tmp_path).ok


# -- deprecations ------------------------------------------------------------------------------------------------


def test_deprecated_hook_warns_when_a_plugin_implements_it() -> None:
    spec = pluggy.HookspecMarker("harness")

    class Specs:
        @spec(
            warn_on_impl=deprecation_warning(
                "harness_old_hook", since="1.1", removed_in="2.0", instead="harness_new_hook"
            )
        )
        def harness_old_hook(self) -> None:
            """An old hook."""

    class Plugin:
        @hookimpl
        def harness_old_hook(self) -> None:
            return None

    manager = pluggy.PluginManager("harness")
    manager.add_hookspecs(Specs)
    with pytest.warns(HarnessDeprecationWarning) as caught:
        manager.register(Plugin())
    message = str(caught[0].message)
    assert "harness_old_hook is deprecated since hook API 1.1 and will be removed in 2.0" in message
    assert "use harness_new_hook instead" in message
    assert issubclass(HarnessDeprecationWarning, DeprecationWarning)


def test_deprecated_spec_field_warns_and_check_reports_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("harness.authoring.deprecation.DEPRECATED_SPEC_FIELDS", dict(DEPRECATED_SPEC_FIELDS))
    deprecate_spec_field(MetricSpec, "threshold", since="1.1", removed_in="2.0", instead="the suite's [thresholds]")
    spec = MetricSpec("authoring_m", "1", "A metric", unit="1", direction="higher", compute="m:f", threshold=0.2)
    with pytest.warns(HarnessDeprecationWarning, match=r"plugin 'p', authoring_m: MetricSpec.threshold is deprecated"):
        assert len(warn_deprecated_spec_fields(spec, plugin="p")) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = MetricSpec("authoring_n", "1", "A metric", unit="1", direction="higher", compute="m:f")
        assert warn_deprecated_spec_fields(default, plugin="p") == []  # the default value does not warn

    monkeypatch.syspath_prepend(str(FIXTURES))
    report = check_plugin("authoring_good", options=PluginOptions(("authoring_good",), autoload=False), run_cells=False)
    assert report.ok  # authoring_good sets no threshold
    deprecate_spec_field(AlgorithmSpec, "task_kinds", since="1.1", removed_in="2.0", instead="something else")
    report = check_plugin("authoring_good", options=PluginOptions(("authoring_good",), autoload=False), run_cells=False)
    [warning] = [item for item in report.items if item.check == "uses no deprecated field"]
    assert warning.status == "warning" and "AlgorithmSpec.task_kinds is deprecated" in warning.message


def test_deprecation_policy_is_enforced_when_declared() -> None:
    with pytest.raises(ValueError, match="must be a later major version"):
        Deprecation("harness_x", since="1.1", removed_in="1.2", instead="harness_y")
    with pytest.raises(ValueError, match="has no field"):
        deprecate_spec_field(MetricSpec, "no_such_field", since="1.1", removed_in="2.0", instead="-")
    with pytest.warns(HarnessDeprecationWarning, match="use new instead"):
        warn_deprecated("old", since="1.0", removed_in="2.0", instead="new")
