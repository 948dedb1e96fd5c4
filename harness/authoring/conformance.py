"""The plugin contract, checked: what ``harness plugins check NAME`` and ``harness.testing`` run.

Each check produces a :class:`CheckItem` that says what was checked, on which spec, and, when it fails, what to
change. The checks, in order:

1. the plugin loads: it imports, its hooks match ``harness/hookspecs.py``, its API version fits, its
   registration hooks return well-formed specs;
2. listing it imports nothing heavy (torch, gymnasium, cupy ... only inside the spec's callables);
3. every spec is complete and typed: description, version, callables that import and accept the keyword
   arguments the harness passes; names are unique across all installed plugins;
4. parameters have typed defaults that validate, and a bad value or an unknown name gives a clear error;
5. metrics declare a unit and a direction, and return a float or None;
6. each algorithm runs one ``smoke`` cell on a compatible environment (each environment with a compatible
   algorithm), through the same :func:`harness.run.worker.execute_cell` the runner uses;
7. the same seed gives the same result (metrics and raw outcome, apart from timings).
"""

from __future__ import annotations

import difflib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.authoring.deprecation import deprecated_fields_used
from harness.errors import BadInput
from harness.plugins import PluginOptions, PluginRecord, PluginRegistry, Registered, load_plugins
from harness.record import CellResult, ComponentRef, canonical_json, make_cell
from harness.specs import (
    MetricSpec,
    Param,
    ParamError,
    SpecError,
    resolve_callable,
)

Status = Literal["passed", "failed", "warning", "skipped"]

#: Libraries that must not be imported by merely listing a plugin (import them inside the spec callables).
HEAVY_MODULES = (
    "torch",
    "tensorflow",
    "jax",
    "gymnasium",
    "mujoco",
    "cupy",
    "ray",
    "mlflow",
    "h5py",
    "transformers",
)

#: Keyword arguments the harness passes to each spec callable.
CALL_SIGNATURES = {
    "run": ("environment", "params", "context"),
    "make": ("params", "context"),
    "compute": ("outcome", "environment", "context"),
}

_STAGE_FIXES = {
    "import": "fix the import error shown in the traceback (try `python -c 'import {module}'`)",
    "api version": "set HARNESS_API_VERSION in the plugin module to the hook API it was written for, and "
    "install a harness of the same major version",
    "hook validation": "rename the function to a hook listed in harness/hookspecs.py (see docs/plugins.md), "
    "or drop its @hookimpl marker if it is a helper",
    "duplicate name": "rename the spec or the entry point so that names are unique across installed plugins",
    "registration": "register each plugin object once, under one name",
}


@dataclass
class CheckItem:
    """One check on one subject (the plugin, or one of its specs)."""

    check: str
    subject: str
    status: Status
    message: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status}] {self.check}: {self.subject}"
        if self.message:
            text += f": {self.message}"
        if self.fix and self.status in ("failed", "warning"):
            text += f"\n    fix: {self.fix}"
        return text


@dataclass
class ConformanceReport:
    """Everything checked for one plugin; ``ok`` is False as soon as one check failed."""

    plugin: str
    items: list[CheckItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if item.status == "failed"]

    def add(self, check: str, subject: str, status: Status, message: str = "", fix: str = "") -> CheckItem:
        item = CheckItem(check, subject, status, message, fix)
        self.items.append(item)
        return item

    def counts(self) -> dict[str, int]:
        counts = {"passed": 0, "failed": 0, "warning": 0, "skipped": 0}
        for item in self.items:
            counts[item.status] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "ok": self.ok,
            "counts": self.counts(),
            "items": [asdict(item) for item in self.items],
        }

    def format(self) -> str:
        counts = self.counts()
        verdict = "conforms" if self.ok else "does NOT conform"
        lines = [f"plugin {self.plugin!r} {verdict} to hook API contract"]
        lines += [item.line() for item in self.items]
        lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
        return "\n".join(lines)


def fresh_registry(options: PluginOptions) -> PluginRegistry:
    """Discover plugins now, and make in-process cells (``execute_cell``) use this same registry.

    ``execute_cell`` reuses a per-process registry cached by options; a long-lived process (a pytest session,
    a notebook) may have installed plugins since it was cached, so the check replaces the cached one.
    """
    from harness import plugins

    registry = load_plugins(options)
    plugins._WORKER_REGISTRY[options] = registry  # no public setter yet; see registry_for()
    return registry


def find_plugin(registry: PluginRegistry, name: str) -> PluginRecord:
    """A plugin by entry-point name, distribution name or module; else :class:`BadInput` listing them."""
    # The plugin's own name first: one distribution may declare several plugins.
    for key, record in registry.plugins.items():
        if name in (key, record.name):
            return record
    for record in registry.plugins.values():
        if name in (record.distribution, record.module, record.module.partition(":")[0]):
            return record
    names = sorted(registry.plugins)
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise BadInput(
        f"no plugin named {name!r} is installed.{hint} Installed: {', '.join(names) or 'none'}. "
        "Install it (`pip install -e PATH`) or load a module with -p MODULE."
    )


def check_plugin(
    name: str,
    *,
    options: PluginOptions | None = None,
    run_cells: bool = True,
    results_dir: str | Path | None = None,
    ignore_outcome_keys: Iterable[str] = (),
) -> ConformanceReport:
    """Run the contract on the installed plugin ``name`` and return the report (raises only for bad input).

    ``options`` discovers plugins as the command line would (``-p`` modules, disabled plugins).
    ``run_cells=False`` checks the specs only. ``ignore_outcome_keys`` names outcome keys that legitimately
    differ between two runs with one seed (measured timings not declared as a timing metric).
    """
    given = options or PluginOptions()
    options = PluginOptions(given.extra_modules, given.disabled, given.autoload)  # strict does not apply here
    registry = fresh_registry(options)
    record = find_plugin(registry, name)
    report = ConformanceReport(record.name)
    _check_loaded(report, record)
    if record.status in ("failed", "disabled"):
        return report
    _check_api_version(report, record)
    _check_light_import(report, record)
    owned = _owned_specs(registry, record)
    _check_unique_names(report, registry, record)
    if not any(owned.values()) and not record.provides.get("suites"):
        report.add(
            "provides something",
            "plugin",
            "failed",
            "it registers no algorithm, environment, metric or suite",
            "implement harness_algorithms, harness_environments, harness_metrics or harness_suites",
        )
    runnable: dict[str, list[Any]] = {kind: [] for kind in owned}
    for kind, specs in owned.items():
        for spec in specs:
            if _check_spec(report, kind, spec, record.name):
                runnable[kind].append(spec)
    if run_cells:
        with tempfile.TemporaryDirectory(prefix="harness-check-") as scratch:
            _check_cells(
                report,
                registry,
                record,
                runnable,
                Path(results_dir) if results_dir else Path(scratch),
                options,
                set(ignore_outcome_keys),
            )
    return report


# -- loading ---------------------------------------------------------------------------------------------------


def _check_loaded(report: ConformanceReport, record: PluginRecord) -> None:
    if record.status == "disabled":
        report.add("loads", "plugin", "failed", "the plugin is disabled", "drop --disable or the autoload switch")
        return
    if not record.problems:
        report.add("loads", "plugin", "passed", f"{record.module} ({record.source})")
        return
    module = record.module.partition(":")[0]
    for problem in record.problems:
        stage = problem.stage
        fix = _STAGE_FIXES.get(stage, "").format(module=module)
        if stage.startswith("hook harness_"):
            hook = stage.removeprefix("hook ")
            fix = f"make {hook}() return a list of the spec objects documented in docs/plugins.md#{hook}"
        message = problem.message
        if problem.traceback:
            message += "\n" + textwrap.indent(problem.traceback.rstrip(), "      ")
        report.add("loads", f"plugin ({stage})", "failed", message, fix)


def _check_api_version(report: ConformanceReport, record: PluginRecord) -> None:
    from harness import HOOK_API_VERSION

    if record.api_version is None:
        report.add(
            "declares hook API version",
            "plugin",
            "warning",
            "the plugin module sets no HARNESS_API_VERSION",
            f'add HARNESS_API_VERSION = "{HOOK_API_VERSION}" to {record.module.partition(":")[0]}',
        )
    else:
        report.add(
            "declares hook API version",
            "plugin",
            "passed",
            f"{record.api_version} (harness {HOOK_API_VERSION})",
        )


_LIGHT_IMPORT_SCRIPT = """
import importlib, json, sys
module_name, _, attribute = sys.argv[1].partition(":")
plugin = importlib.import_module(module_name)
for part in filter(None, attribute.split(".")):
    plugin = getattr(plugin, part)
for hook in ("harness_algorithms", "harness_environments", "harness_metrics", "harness_suites"):
    function = getattr(plugin, hook, None)
    if callable(function):
        function()
print(json.dumps(sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)))
"""


def _check_light_import(report: ConformanceReport, record: PluginRecord) -> None:
    """Import the plugin and call its registration hooks in a fresh interpreter; list heavy modules loaded."""
    # The child sees what this process sees (-p modules are found through paths added at run time).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    completed = subprocess.run(
        [sys.executable, "-c", _LIGHT_IMPORT_SCRIPT, record.module, json.dumps(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if completed.returncode != 0:
        report.add(
            "imports nothing heavy",
            "plugin",
            "warning",
            f"could not check: {completed.stderr.strip()[-500:]}",
        )
        return
    heavy = json.loads(completed.stdout.strip().splitlines()[-1])
    if heavy:
        report.add(
            "imports nothing heavy",
            "plugin",
            "failed",
            f"importing the plugin and calling its registration hooks imports {', '.join(heavy)}",
            "give callables as 'module:function' strings and import heavy libraries inside those functions",
        )
    else:
        report.add("imports nothing heavy", "plugin", "passed")


def _owned_specs(registry: PluginRegistry, record: PluginRecord) -> dict[str, list[Any]]:
    owned: dict[str, list[Any]] = {"algorithm": [], "environment": [], "metric": []}
    for kind, table in registry.specs.items():
        owned[kind] = [registered.spec for registered in table.values() if registered.plugin is record]
    return owned


def _check_unique_names(report: ConformanceReport, registry: PluginRegistry, record: PluginRecord) -> None:
    clashes = [
        (kind, name, owners)
        for kind, table in registry.ambiguous.items()
        for name, owners in table.items()
        if record.name in owners
    ]
    for kind, name, owners in clashes:
        others = [owner for owner in owners if owner != record.name] or owners
        report.add(
            "names unique",
            f"{kind} {name!r}",
            "failed",
            f"also registered by {', '.join(map(repr, others))}; neither is used",
            f"rename the {kind} (for example prefix it with your plugin's name)",
        )
    if not clashes:
        report.add("names unique", "plugin", "passed")


# -- specs -----------------------------------------------------------------------------------------------------


def _subject(kind: str, spec: Any) -> str:
    return f"{kind} {getattr(spec, 'name', '?')!r}"


def _check_spec(report: ConformanceReport, kind: str, spec: Any, plugin: str) -> bool:
    """Static checks of one spec; True when its callable resolved (so cells may run it)."""
    subject = _subject(kind, spec)
    try:
        spec.check()
    except SpecError as exc:
        report.add("spec complete", subject, "failed", str(exc), "fix the field named in the message")
        return False
    report.add("spec complete", subject, "passed", f"version {spec.version}")
    for deprecation in deprecated_fields_used(spec):
        report.add(
            "uses no deprecated field",
            subject,
            "warning",
            deprecation.message(),
            f"use {deprecation.instead}",
        )
    if isinstance(spec, MetricSpec):
        report.add(
            "declares unit and direction",
            subject,
            "passed",
            f"unit {spec.unit!r}, {spec.direction} is better",
        )
    _check_params(report, subject, spec)
    reason = spec.unavailable_reason()
    if reason:
        report.add("available here", subject, "skipped", reason)
        return False
    attribute = {"algorithm": "run", "environment": "make", "metric": "compute"}[kind]
    target = getattr(spec, attribute)
    try:
        function = resolve_callable(target)
    except Exception as exc:
        report.add(
            "callable imports",
            subject,
            "failed",
            f"{attribute} = {target!r} cannot be resolved: {type(exc).__name__}: {exc}",
            f"point {attribute} at an importable 'module:function' (check the module path and the name)",
        )
        return False
    expected = CALL_SIGNATURES[attribute]
    try:
        inspect.signature(function).bind(**dict.fromkeys(expected))
    except TypeError as exc:
        report.add(
            "callable signature",
            subject,
            "failed",
            f"{attribute} cannot be called as {attribute}({', '.join(f'{n}=...' for n in expected)}): {exc}",
            f"define it as def {getattr(function, '__name__', attribute)}(*, {', '.join(expected)}) "
            "(accept **kwargs to ignore what you do not use)",
        )
        return False
    except ValueError:
        pass  # builtins without a signature: nothing to check statically
    report.add("callable signature", subject, "passed", f"{attribute}({', '.join(expected)})")
    return True


def _wrong_value_for(param: Param) -> Any:
    """A value of the wrong type for ``param`` (None when any value is accepted)."""
    default = param.default
    if default is None:
        return None
    if isinstance(default, bool):
        return "not-a-bool"
    if isinstance(default, (int, float)):
        return "not-a-number"
    if isinstance(default, str):
        return 12345
    if isinstance(default, (list, tuple)):
        return 12345
    return None


def _check_params(report: ConformanceReport, subject: str, spec: Any) -> None:
    params: Sequence[Param] = getattr(spec, "params", ())
    failures = 0
    for param in params:
        where = f"{subject} parameter {param.name!r}"
        try:
            param.validate(param.default)
        except ParamError as exc:
            failures += 1
            report.add(
                "parameter default validates",
                where,
                "failed",
                str(exc),
                "make the default one of its choices",
            )
            continue
        if param.default is None and param.choices is None:
            report.add(
                "parameter typed",
                where,
                "warning",
                "its default is None, so any value is accepted unchecked",
                "give a typed default (bool, int, float, str or list) or a tuple of choices",
            )
        if not param.description.strip():
            report.add(
                "parameter documented",
                where,
                "warning",
                "no description",
                "describe it in Param(description=...): it is shown by `harness list`",
            )
        wrong = _wrong_value_for(param)
        if wrong is None:
            continue
        try:
            spec.resolve_params({param.name: wrong})
        except ParamError as exc:
            if spec.name not in str(exc) or param.name not in str(exc):
                failures += 1
                report.add("bad parameter gives a clear error", where, "failed", f"error does not name it: {exc}")
        else:
            failures += 1
            report.add(
                "bad parameter gives a clear error",
                where,
                "failed",
                f"the value {wrong!r} was accepted",
                "give the parameter a default of the type it expects, or choices",
            )
    unknown = "no_such_parameter"
    try:
        spec.resolve_params({unknown: 1})
    except ParamError as exc:
        if unknown not in str(exc):
            failures += 1
            report.add("bad parameter gives a clear error", subject, "failed", f"error does not name it: {exc}")
    else:
        failures += 1
        report.add("bad parameter gives a clear error", subject, "failed", f"unknown parameter {unknown!r} accepted")
    if not failures and params:
        report.add(
            "parameters have defaults and validate",
            subject,
            "passed",
            f"{len(params)} parameter(s); a wrong type and an unknown name are refused with a clear error",
        )


# -- cells -----------------------------------------------------------------------------------------------------


def _smoke_settings(registry: PluginRegistry, record: PluginRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """Budget and parameter overrides of the ``smoke`` profile of the plugin's own suites (first found)."""
    from harness.run.suite import load_suite_file

    for path, owner in registry.suite_files:
        if owner is not record:
            continue
        try:
            suite = load_suite_file(Path(path))
        except BadInput:
            continue
        profile = suite.model.profiles.get("smoke")
        if profile is not None:
            return dict(profile.budget), dict(profile.params)
    return {}, {}


def _check_suites(report: ConformanceReport, registry: PluginRegistry, record: PluginRecord) -> None:
    from harness.run.suite import load_suite_file

    for path, owner in registry.suite_files:
        if owner is not record:
            continue
        subject = f"suite {Path(path).name}"
        if not Path(path).is_file():
            report.add("suite expands", subject, "failed", f"{path} does not exist", "ship the file as package data")
            continue
        try:
            profile, cells = load_suite_file(Path(path)).expand(registry, "smoke" if _has_smoke(path) else None)
        except BadInput as exc:
            report.add("suite expands", subject, "failed", str(exc), "fix the key named in the message")
            continue
        report.add("suite expands", subject, "passed", f"profile {profile!r}: {len(cells)} cell(s)")


def _has_smoke(path: str | Path) -> bool:
    from harness.run.suite import load_suite_file

    return "smoke" in load_suite_file(Path(path)).model.profiles


def _component(registered: Registered, overrides: dict[str, Any]) -> ComponentRef:
    spec = registered.spec
    prefix = f"{spec.name}."
    params = {key.removeprefix(prefix): value for key, value in overrides.items() if key.startswith(prefix)}
    return ComponentRef(
        name=spec.name,
        version=spec.version,
        plugin=registered.plugin.distribution or registered.plugin.name,
        plugin_version=registered.plugin.version or "0",
        params=spec.resolve_params(params),
    )


def _pairs(registry: PluginRegistry, record: PluginRecord, runnable: dict[str, list[Any]]) -> list[tuple[Any, Any]]:
    """(algorithm, environment) registrations covering every runnable algorithm and environment of the plugin."""

    def prefer_own(candidates: list[Registered]) -> Registered | None:
        own = [c for c in candidates if c.plugin is record]
        usable = [c for c in own or candidates if c.spec.unavailable_reason() is None]
        return usable[0] if usable else None

    algorithms = [registry.specs["algorithm"][spec.name] for spec in runnable["algorithm"]]
    environments = [registry.specs["environment"][spec.name] for spec in runnable["environment"]]
    pairs: list[tuple[Any, Any]] = []
    covered: set[str] = set()
    for algorithm in algorithms:
        environment = prefer_own(
            [e for e in registry.specs["environment"].values() if e.spec.task_kind in algorithm.spec.task_kinds]
        )
        pairs.append((algorithm, environment))
        if environment is not None:
            covered.add(environment.spec.name)
    for environment in environments:
        if environment.spec.name in covered:
            continue
        partner = prefer_own(
            [a for a in registry.specs["algorithm"].values() if environment.spec.task_kind in a.spec.task_kinds]
        )
        pairs.append((partner, environment))
    return pairs


def _timing_like(unit: str) -> bool:
    """Units of measured time, rates and memory: they describe the machine and vary between runs."""
    unit = unit.strip().lower()
    return unit in {
        "s",
        "ms",
        "us",
        "µs",
        "ns",
        "min",
        "h",
        "mb",
        "mib",
        "gb",
        "gib",
        "kb",
        "kib",
        "bytes",
    } or ("/s" in unit)


def _check_cells(
    report: ConformanceReport,
    registry: PluginRegistry,
    record: PluginRecord,
    runnable: dict[str, list[Any]],
    results_dir: Path,
    options: PluginOptions,
    ignore_outcome_keys: set[str],
) -> None:
    from harness.run.worker import execute_cell

    _check_suites(report, registry, record)
    budget, overrides = _smoke_settings(registry, record)
    timing_names = {name for name, reg in registry.specs["metric"].items() if _timing_like(reg.spec.unit)}
    exercised_metrics: set[str] = set()
    for algorithm, environment in _pairs(registry, record, runnable):
        if algorithm is None or environment is None:
            present = algorithm or environment
            kinds = present.spec.task_kinds if algorithm else [present.spec.task_kind]
            missing = "environment" if algorithm else "algorithm"
            report.add(
                "runs one smoke cell",
                _subject("algorithm" if algorithm else "environment", present.spec),
                "skipped",
                f"no installed {missing} fits task kind {', '.join(map(repr, kinds))}",
                f"install a plugin providing such an {missing}, or ship one in this plugin",
            )
            continue
        kind = environment.spec.task_kind
        metrics = tuple(spec.name for spec in runnable["metric"] if (not spec.task_kinds or kind in spec.task_kinds))
        subject = f"{algorithm.spec.name!r} on {environment.spec.name!r}"
        try:
            algorithm_ref, environment_ref = (
                _component(algorithm, overrides),
                _component(environment, overrides),
            )
        except ParamError as exc:
            report.add("runs one smoke cell", subject, "failed", str(exc), "fix the smoke profile's params")
            continue
        cell = make_cell(
            suite=f"check-{record.name}",
            profile="smoke",
            algorithm=algorithm_ref,
            environment=environment_ref,
            seed=0,
            metrics=metrics,
            budget=budget,
            task_kind=kind,
        )
        first = execute_cell(cell, options, results_dir)
        if not _report_cell(report, subject, first, metrics):
            continue
        exercised_metrics.update(first.metrics)
        second = execute_cell(cell, options, results_dir)
        _report_determinism(report, subject, first, second, timing_names | ignore_outcome_keys)
    for spec in runnable["metric"]:
        if spec.name not in exercised_metrics:
            report.add(
                "metric computed on a smoke cell",
                _subject("metric", spec),
                "skipped",
                "no smoke cell of this plugin produced it (None, or no environment of its task kinds)",
            )


def _report_cell(report: ConformanceReport, subject: str, result: CellResult, metrics: Sequence[str]) -> bool:
    if result.status == "skipped":
        report.add("runs one smoke cell", subject, "skipped", result.error or "")
        return False
    if result.status != "ok":
        trace = "\n" + textwrap.indent((result.traceback or "").rstrip(), "      ") if result.traceback else ""
        report.add(
            "runs one smoke cell",
            subject,
            "failed",
            f"{result.error}{trace}",
            "run it yourself with `harness run` on a suite with this pair; the traceback shows where it failed",
        )
        return False
    try:
        json.dumps(result.outcome, allow_nan=True)
    except (TypeError, ValueError) as exc:  # to_json_compatible should prevent this; keep the check honest
        report.add("runs one smoke cell", subject, "failed", f"outcome is not JSON-serialisable: {exc}")
        return False
    shown = ", ".join(f"{name}={value:.6g}" for name, value in sorted(result.metrics.items()))
    report.add(
        "runs one smoke cell",
        subject,
        "passed",
        f"{result.duration_s:.2f} s; {shown or 'no metrics of this plugin'}",
    )
    return True


def _differences(first: dict[str, Any], second: dict[str, Any], ignore: set[str], prefix: str) -> list[str]:
    keys = sorted(set(first) | set(second))
    return [
        f"{prefix}{key}: {first.get(key)!r} then {second.get(key)!r}"
        for key in keys
        if key not in ignore and canonical_json(first.get(key)) != canonical_json(second.get(key))
    ]


def _report_determinism(
    report: ConformanceReport, subject: str, first: CellResult, second: CellResult, ignore: set[str]
) -> None:
    if second.status != "ok":
        report.add("same seed gives the same result", subject, "failed", f"second run failed: {second.error}")
        return
    differences = _differences(first.metrics, second.metrics, ignore, "metric ")
    differences += _differences(first.outcome, second.outcome, ignore, "outcome ")
    if differences:
        report.add(
            "same seed gives the same result",
            subject,
            "failed",
            "two runs with seed 0 differ: " + "; ".join(differences[:5]),
            "draw all randomness from context.seed (context.numpy_rng(), seeded torch generators); if a value "
            "is a measured time, declare it as a metric with a time unit or pass --ignore KEY",
        )
    else:
        report.add("same seed gives the same result", subject, "passed", "metrics and outcome identical")
