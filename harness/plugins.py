"""Plugin discovery: the harness's own entry-point loader on top of pluggy.

Why not ``PluginManager.load_setuptools_entrypoints``: it stops at the first plugin that fails to import and
silently drops a second plugin registered under the same name. Here each entry point is loaded on its own,
every failure is kept with its traceback and shown by ``harness plugins``, and ``--strict`` turns any failure
into an error.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pluggy

from harness import hookspecs
from harness.errors import BadInput
from harness.specs import AlgorithmSpec, EnvironmentSpec, MetricSpec, SpecError, check_spec_list

ENTRY_POINT_GROUP = "harness"
AUTOLOAD_ENV = "HARNESS_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGIN = "harness.builtin"

Kind = Literal["algorithm", "environment", "metric"]
_REGISTRATION_HOOKS: dict[str, tuple[str, type]] = {
    "algorithm": ("harness_algorithms", AlgorithmSpec),
    "environment": ("harness_environments", EnvironmentSpec),
    "metric": ("harness_metrics", MetricSpec),
}


@dataclass(frozen=True)
class PluginOptions:
    """How to discover plugins; picklable so workers (local or Ray) discover exactly what the driver did."""

    extra_modules: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    autoload: bool | None = None  # None: autoload unless HARNESS_DISABLE_PLUGIN_AUTOLOAD is set
    strict: bool = False

    @property
    def autoload_enabled(self) -> bool:
        if self.autoload is not None:
            return self.autoload
        return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")


@dataclass
class PluginProblem:
    """A failure attributed to one plugin: where it happened and what to do."""

    plugin: str
    stage: str
    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.stage}): {self.message}"


@dataclass
class PluginRecord:
    """One discovered plugin, loaded or not."""

    name: str
    module: str
    source: str  # "entry point", "-p", "builtin"
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | failed | disabled
    provides: dict[str, list[str]] = field(default_factory=dict)
    problems: list[PluginProblem] = field(default_factory=list)
    api_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "source": self.source,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "api_version": self.api_version,
            "provides": self.provides,
            "problems": [{"stage": p.stage, "message": p.message, "traceback": p.traceback} for p in self.problems],
        }


@dataclass(frozen=True)
class Registered:
    """A spec with the plugin that registered it."""

    spec: Any
    plugin: PluginRecord


class UnknownName(BadInput):
    pass


class PluginRegistry:
    """Everything discovered: the pluggy manager, the plugins, and the specs by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, options: PluginOptions) -> None:
        self.pm = pm
        self.options = options
        self.plugins: dict[str, PluginRecord] = {}
        self.specs: dict[str, dict[str, Registered]] = {kind: {} for kind in _REGISTRATION_HOOKS}
        self.ambiguous: dict[str, dict[str, list[str]]] = {kind: {} for kind in _REGISTRATION_HOOKS}
        self.suite_files: list[tuple[Path, PluginRecord]] = []

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def problems(self) -> list[PluginProblem]:
        return [problem for record in self.plugins.values() for problem in record.problems]

    def get(self, kind: Kind, name: str) -> Registered:
        """The spec registered as ``name``, or a clear error listing what exists and the close matches."""
        table = self.specs[kind]
        if name in table:
            return table[name]
        if name in self.ambiguous[kind]:
            owners = " and ".join(repr(p) for p in self.ambiguous[kind][name])
            raise UnknownName(
                f"{kind} {name!r} is registered by more than one plugin ({owners}); neither is used. "
                f"Disable one with --disable NAME or uninstall it."
            )
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        available = ", ".join(sorted(table)) or "none (is the plugin installed? see `harness plugins`)"
        # The name may belong to a plugin that failed to load: say which, and why, rather than only "unknown".
        broken = [
            f"{record.name} ({'; '.join(problem.message for problem in record.problems) or record.status})"
            for record in self.plugins.values()
            if record.status == "failed" or (record.problems and not record.provides.get(f"{kind}s"))
        ]
        failed = (
            f" Plugins that failed to load (one may provide it): {'; '.join(broken)}. Fix or reinstall them; "
            "`harness plugins` shows the details."
            if broken
            else ""
        )
        raise UnknownName(f"unknown {kind} {name!r}.{hint} Available: {available}.{failed}")

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.specs[kind])


def _distribution_of(entry_point: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _api_version_problem(plugin_name: str, obj: Any) -> str | None:
    from harness import HOOK_API_VERSION

    declared = getattr(obj, "HARNESS_API_VERSION", None)
    if declared is None:
        return None
    try:
        declared_major, declared_minor = (int(x) for x in str(declared).split(".")[:2])
        ours_major, ours_minor = (int(x) for x in HOOK_API_VERSION.split(".")[:2])
    except ValueError:
        return f"HARNESS_API_VERSION {declared!r} is not 'MAJOR.MINOR'"
    if declared_major != ours_major or declared_minor > ours_minor:
        return (
            f"written for hook API {declared}, this harness provides {HOOK_API_VERSION}; "
            f"install a harness compatible with {declared} or update the plugin"
        )
    return None


def _register(registry: PluginRegistry, obj: Any, record: PluginRecord) -> None:
    """Register one plugin object; any pluggy validation failure is recorded against it."""
    problem = _api_version_problem(record.name, obj)
    if problem:
        record.status = "failed"
        record.problems.append(PluginProblem(record.name, "api version", problem))
        return
    record.api_version = getattr(obj, "HARNESS_API_VERSION", None)
    try:
        registry.pm.register(obj, name=record.name)
        registry.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if registry.pm.is_registered(obj):
            registry.pm.unregister(obj)
        record.status = "failed"
        record.problems.append(
            PluginProblem(
                record.name,
                "hook validation",
                f"{exc} (hook names must match harness/hookspecs.py; see `harness plugins --help`)",
            )
        )
    except ValueError as exc:  # pluggy: plugin or name already registered
        record.status = "failed"
        record.problems.append(PluginProblem(record.name, "registration", str(exc)))


def _load_entry_points(registry: PluginRegistry, disabled: set[str]) -> None:
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        by_name.setdefault(entry_point.name, []).append(entry_point)
    for name, entry_points in sorted(by_name.items()):
        # The same distribution can be seen twice on sys.path (an editable install beside a copy); only
        # distinct distributions claiming one name are a conflict.
        distinct = {(_distribution_of(ep)[0], ep.value): ep for ep in entry_points}
        if len(distinct) > 1:
            claimants = [f"{dist or '?'} ({value})" for dist, value in distinct]
            for index, entry_point in enumerate(distinct.values()):
                dist_name, version = _distribution_of(entry_point)
                key = name if index == 0 else f"{name}#{index + 1}"
                registry.plugins[key] = PluginRecord(
                    name=name,
                    module=entry_point.value,
                    source="entry point",
                    distribution=dist_name,
                    version=version,
                    status="failed",
                    problems=[
                        PluginProblem(
                            name,
                            "duplicate name",
                            f"plugin name {name!r} is claimed by {' and '.join(claimants)}; neither is "
                            "loaded. Uninstall one, or rename its entry point.",
                        )
                    ],
                )
            continue
        entry_point = entry_points[0]
        dist_name, version = _distribution_of(entry_point)
        record = PluginRecord(
            name=name, module=entry_point.value, source="entry point", distribution=dist_name, version=version
        )
        registry.plugins[name] = record
        if name in disabled or (dist_name and dist_name in disabled):
            record.status = "disabled"
            continue
        try:
            obj = entry_point.load()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.status = "failed"
            record.problems.append(
                PluginProblem(name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            )
            continue
        _register(registry, obj, record)


def _load_modules(registry: PluginRegistry, modules: Iterable[str], disabled: set[str]) -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for module_name in modules:
        record = PluginRecord(name=module_name, module=module_name, source="-p")
        if module_name in registry.plugins:
            # Already loaded through its entry point: loading it twice would register every spec twice.
            continue
        registry.plugins[module_name] = record
        if module_name in disabled:
            record.status = "disabled"
            continue
        try:
            obj = importlib.import_module(module_name)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            record.status = "failed"
            record.problems.append(
                PluginProblem(module_name, "import", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            )
            continue
        _register(registry, obj, record)


def _collect_specs(registry: PluginRegistry) -> None:
    owners: dict[str, dict[str, list[Registered]]] = {kind: {} for kind in _REGISTRATION_HOOKS}
    records_by_plugin_name = {
        registry.pm.get_name(plugin): record
        for record in registry.plugins.values()
        for plugin in [registry.pm.get_plugin(record.name)]
        if plugin is not None
    }
    for kind, (hook_name, spec_type) in _REGISTRATION_HOOKS.items():
        for impl in getattr(registry.pm.hook, hook_name).get_hookimpls():
            record = records_by_plugin_name.get(impl.plugin_name)
            if record is None:
                continue
            try:
                specs = check_spec_list(impl.function(), spec_type, hook_name)
            except SpecError as exc:
                record.problems.append(PluginProblem(record.name, f"hook {hook_name}", str(exc)))
                continue
            except Exception as exc:
                record.problems.append(
                    PluginProblem(
                        record.name,
                        f"hook {hook_name}",
                        f"{type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                    )
                )
                continue
            for spec in specs:
                owners[kind].setdefault(spec.name, []).append(Registered(spec, record))
                record.provides.setdefault(kind + "s", []).append(spec.name)
    for kind, table in owners.items():
        for name, claims in table.items():
            plugin_names = [claim.plugin.name for claim in claims]
            if len(claims) == 1:
                registry.specs[kind][name] = claims[0]
                continue
            registry.ambiguous[kind][name] = plugin_names
            for claim in claims:
                claim.plugin.problems.append(
                    PluginProblem(
                        claim.plugin.name,
                        "duplicate name",
                        f"{kind} {name!r} is registered by {' and '.join(map(repr, plugin_names))}; neither "
                        "is used. Rename it in one plugin or disable one with --disable.",
                    )
                )
    for impl in registry.pm.hook.harness_suites.get_hookimpls():
        record = records_by_plugin_name.get(impl.plugin_name)
        if record is None:
            continue
        try:
            paths: list[Any] = list(impl.function() or [])  # type: ignore[call-overload]
            for path in paths:
                registry.suite_files.append((Path(path), record))
                record.provides.setdefault("suites", []).append(Path(path).stem)
        except Exception as exc:
            record.problems.append(
                PluginProblem(
                    record.name, "hook harness_suites", f"{type(exc).__name__}: {exc}", traceback.format_exc()
                )
            )


def load_plugins(options: PluginOptions | None = None) -> PluginRegistry:
    """Discover and register every plugin; raise :class:`BadInput` only in strict mode.

    Order: the harness's built-in plugin, entry points of the ``harness`` group (unless autoload is off),
    then modules given with ``-p``.
    """
    from harness import builtin

    options = options or PluginOptions()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm, options)
    pm.register(builtin, name=BUILTIN_PLUGIN)
    disabled = set(options.disabled)
    if options.autoload_enabled:
        _load_entry_points(registry, disabled)
    _load_modules(registry, options.extra_modules, disabled)
    _collect_specs(registry)
    for record in registry.plugins.values():
        if record.problems and record.status == "loaded":
            record.status = "loaded with errors"
    if options.strict and registry.problems:
        details = "\n".join(f"  - {problem}" for problem in registry.problems)
        raise BadInput(f"--strict: {len(registry.problems)} plugin problem(s):\n{details}")
    return registry


_WORKER_REGISTRY: dict[PluginOptions, PluginRegistry] = {}


def registry_for(options: PluginOptions) -> PluginRegistry:
    """A process-wide cached registry (workers load plugins once, then reuse them for every cell)."""
    registry = _WORKER_REGISTRY.get(options)
    if registry is None:
        registry = load_plugins(PluginOptions(options.extra_modules, options.disabled, options.autoload))
        _WORKER_REGISTRY[options] = registry
    return registry


def reset_registry_cache() -> None:
    """Forget cached registries (after installing or removing plugins in a long-lived process, e.g. tests)."""
    _WORKER_REGISTRY.clear()


def spec_owner_names(registered: Sequence[Registered]) -> list[str]:
    return [r.plugin.name for r in registered]
