"""Suite expansion: a validated suite, its profile and ``--set`` overrides resolved against the installed
plugins into cells (names, parameters and sweeps, seeds, budgets, code versions, keys), with a clear error
naming the file and key for anything that cannot run."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.plugins import PluginRegistry, UnknownName
from harness.record import Cell, ComponentRef, MetricDeclaration, make_cell
from harness.run import DEFAULT_MAX_CELLS
from harness.run.code_version import spec_code_version
from harness.run.suite import Profile, Suite, check_seeds, check_timeout
from harness.specs import ParamError


def expand_suite(
    suite: Suite,
    registry: PluginRegistry,
    profile_name: str | None = None,
    overrides: Sequence[str] = (),
    max_cells: int = DEFAULT_MAX_CELLS,
) -> tuple[str, list[Cell]]:
    """Resolve names and parameters against the plugins and return ``(profile, cells)``.

    Raises :class:`BadInput` naming the file and key for anything that cannot run, and for a profile of
    more than ``max_cells`` cells (counted before anything is expanded).
    """
    chosen, profile = suite.profile(profile_name)
    settings = _apply_overrides(suite, profile, overrides)
    count = suite.count_cells(profile, settings["seeds"], settings["seeds_overridden"])
    if count > max_cells:
        raise BadInput(
            f"{suite.path}: profile {chosen!r} has {count:,} cells, more than the limit of {max_cells:,}. "
            "Check the sweeps and seeds for a typo, or raise the limit with --max-cells N."
        )
    suite._check_threshold_metrics(registry)
    budget = dict(settings["budget"])  # one mapping shared by the cells (Cell is frozen; nobody mutates it)
    cells: list[Cell] = []
    seen: set[str] = set()
    # A label names one configuration and a configuration one label: reports, comparisons and resumes
    # tell cells apart by label, so either a merge or a split would make a row silently wrong or missing.
    by_label: dict[str, tuple[str, str]] = {}  # cell label -> (key, where it was defined)
    by_key: dict[str, tuple[str, str]] = {}  # cell key -> (label, where it was defined)
    for index, matrix in enumerate(suite.matrices(profile)):
        where = f"{suite.path}: matrix[{index}]"
        seeds = settings["seeds"] if settings["seeds_overridden"] else (matrix.seeds or settings["seeds"])
        metric_names = list(dict.fromkeys([*suite.model.metrics, *matrix.metrics]))
        metrics = [_lookup(registry, "metric", name, f"{where}.metrics") for name in metric_names]
        metric_code = {metric.spec.name: spec_code_version(metric.spec) for metric in metrics}
        for (a_index, algorithm_entry), (e_index, environment_entry) in itertools.product(
            enumerate(matrix.algorithms), enumerate(matrix.environments)
        ):
            algorithm = _lookup(registry, "algorithm", algorithm_entry.name, f"{where}.algorithms")
            environment = _lookup(registry, "environment", environment_entry.name, f"{where}.environments")
            if environment.spec.task_kind not in algorithm.spec.task_kinds:
                raise BadInput(
                    f"{where}: algorithm {algorithm.spec.name!r} runs on environments of kind "
                    f"{list(algorithm.spec.task_kinds)}, but {environment.spec.name!r} is of kind "
                    f"{environment.spec.task_kind!r}; move them to separate [[matrix]] tables"
                )
            for metric in metrics:
                if metric.spec.task_kinds and environment.spec.task_kind not in metric.spec.task_kinds:
                    raise BadInput(
                        f"{where}.metrics: metric {metric.spec.name!r} applies to kinds "
                        f"{list(metric.spec.task_kinds)}, not {environment.spec.task_kind!r}"
                    )
            for (algorithm_label, algorithm_params), (
                environment_label,
                environment_params,
            ) in itertools.product(algorithm_entry.expand(), environment_entry.expand()):
                algorithm_ref = _component(
                    algorithm,
                    algorithm_params,
                    settings["params"],
                    (algorithm_entry.name, algorithm_entry.label, algorithm_label),
                    f"{where}.algorithms",
                    algorithm_entry.sweep,
                )
                environment_ref = _component(
                    environment,
                    environment_params,
                    settings["params"],
                    (environment_entry.name, environment_entry.label, environment_label),
                    f"{where}.environments",
                    environment_entry.sweep,
                )
                keys = Cell.keys_for_seeds(
                    algorithm_ref, environment_ref, seeds, tuple(metric_names), settings["budget"], metric_code
                )
                config_keys = Cell.keys_for_seeds(
                    algorithm_ref,
                    environment_ref,
                    seeds,
                    tuple(metric_names),
                    settings["budget"],
                    with_code=False,
                )
                for seed, key, config_key in zip(seeds, keys, config_keys, strict=True):
                    label = f"{algorithm_label}/{environment_label}/seed={seed}"
                    definition = (
                        f"{where}.algorithms[{a_index}] x environments[{e_index}]: "
                        f"{_describe(algorithm_ref)} on {_describe(environment_ref)}, seed {seed}, "
                        f"metrics {', '.join(metric_names) or 'none'}"
                    )
                    _check_one_label_per_cell(suite.path, label, key, definition, by_label, by_key)
                    if key in seen:
                        continue  # the same cell under the same label in two matrices: run once
                    seen.add(key)
                    cells.append(
                        make_cell(
                            suite=suite.name,
                            profile=chosen,
                            algorithm=algorithm_ref,
                            environment=environment_ref,
                            seed=seed,
                            metrics=metric_names,
                            budget=budget,
                            timeout_s=settings["timeout_s"],
                            task_kind=environment.spec.task_kind,
                            algorithm_label=algorithm_label,
                            environment_label=environment_label,
                            metric_code=metric_code,
                            key=key,
                            config_key=config_key,
                        )
                    )
    _check_param_overrides_used(suite, settings["params"], registry)
    return chosen, cells


def _describe(ref: ComponentRef) -> str:
    import json

    return f"{ref.name} {json.dumps(dict(ref.params), sort_keys=True, default=str)}"


def _check_one_label_per_cell(
    path: Path,
    label: str,
    key: str,
    definition: str,
    by_label: dict[str, tuple[str, str]],
    by_key: dict[str, tuple[str, str]],
) -> None:
    """Refuse two configurations under one label (merged in every report) and one configuration under two
    labels (run once, so one label silently loses its point), naming both definitions."""
    if key in by_key and by_key[key][0] != label:
        other_label, other = by_key[key]
        raise BadInput(
            f"{path}: one cell has two labels, {other_label!r} and {label!r}: the same algorithm, parameters, "
            f"environment, seed and metrics, so it would run once and be reported under one of them only.\n"
            f"  {other}\n  {definition}\n"
            "Remove one of the entries (or the point from the sweep), or change a parameter so they differ."
        )
    if label in by_label and by_label[label][0] != key:
        raise BadInput(
            f"{path}: two different cells are labelled {label!r}; reports and comparisons would merge them "
            f"into one row.\n  {by_label[label][1]}\n  {definition}\n"
            'Give one of the entries its own label = "..." (or make them the same configuration).'
        )
    by_label.setdefault(label, (key, definition))
    by_key.setdefault(key, (label, definition))


def _lookup(registry: PluginRegistry, kind: Any, name: str, where: str) -> Any:
    try:
        return registry.get(kind, name)
    except UnknownName as exc:
        raise BadInput(f"{where}: {exc}") from None


def _component(
    registered: Any,
    entry_params: Mapping[str, Any],
    profile_params: Mapping[str, Any],
    aliases: tuple[str, str | None, str],
    where: str,
    sweep: Mapping[str, list[Any]] | None = None,
) -> ComponentRef:
    params = dict(entry_params)
    # Profile and --set overrides address an entry by its name, its label or its swept label.
    for alias in aliases:
        if alias is None:
            continue
        for key, value in profile_params.items():
            prefix, _, param = key.rpartition(".")
            if prefix == alias:
                if sweep and param in sweep:
                    # Overriding a swept parameter would collapse the sweep's cells into one that is still
                    # labelled with a swept value: the label and the cell would disagree.
                    raise BadInput(
                        f"{where}: {key} overrides a swept parameter ({param} is swept over {sweep[param]}); "
                        "edit the sweep in the suite file, or give the entry a second, unswept copy"
                    )
                params[param] = value
    spec = registered.spec
    try:
        resolved = spec.resolve_params(params)
    except ParamError as exc:
        raise BadInput(f"{where}: {exc}") from None
    plugin = registered.plugin
    return ComponentRef(
        name=spec.name,
        version=spec.version,
        plugin=plugin.distribution or plugin.name,
        plugin_version=plugin.version or "0",
        params=resolved,
        code_version=spec_code_version(spec),
    )


def _check_param_overrides_used(suite: Suite, params: Mapping[str, Any], registry: PluginRegistry) -> None:
    """A profile or --set parameter that addresses nothing in the suite is a typo: refuse it."""
    targets: set[str] = set()
    for matrix in itertools.chain(suite.matrices(None), *(p.matrix or [] for p in suite.model.profiles.values())):
        for entry in (*matrix.algorithms, *matrix.environments):
            targets.add(entry.name)
            if entry.label:
                targets.add(entry.label)
            targets.update(label for label, _ in entry.expand())
    for key in params:
        prefix, dot, _ = key.rpartition(".")
        if not dot or prefix not in targets:
            raise BadInput(
                f"{suite.path}: parameter override {key!r} names no algorithm or environment of the suite "
                f"(expected '<name or label>.<param>'; names: {', '.join(sorted(targets))})"
            )


_SETTABLE = ("seeds", "timeout_s")


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as TOML (a bare word is taken as a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInput(f"--set {text!r}: expected KEY=VALUE, for example --set iql.batch_size=64")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def _apply_overrides(suite: Suite, profile: Profile, overrides: Sequence[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "seeds": profile.seeds if profile.seeds is not None else suite.model.seeds,
        "seeds_overridden": profile.seeds is not None,
        "timeout_s": profile.timeout_s if profile.timeout_s is not None else suite.model.timeout_s,
        "budget": dict(profile.budget),
        "params": dict(profile.params),
    }
    for text in overrides:
        key, value = parse_override(text)
        if key == "seeds":
            try:
                settings["seeds"] = check_seeds(value, f"--set seeds={value!r}: seeds")
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            settings["seeds_overridden"] = True
        elif key == "timeout_s":
            try:
                settings["timeout_s"] = check_timeout(value, f"--set timeout_s={value!r}")
            except ValueError as exc:
                raise BadInput(str(exc)) from None
        elif key.startswith("budget."):
            budget_key = key.removeprefix("budget.")
            known = suite.budget_keys()
            if budget_key not in known:
                import difflib

                close = difflib.get_close_matches(budget_key, sorted(known), n=3)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise BadInput(
                    f"--set {key}: no profile of {suite.path} has a budget key {budget_key!r}.{hint} "
                    f"Known: {', '.join(sorted(known)) or 'none'} (a new key would change every cell's key "
                    "while no plugin reads it; add it to a profile's budget in the suite file first)"
                )
            settings["budget"][budget_key] = value
        elif "." in key:
            settings["params"][key] = value
        else:
            raise BadInput(f"--set {key}: unknown key; use {', '.join(_SETTABLE)}, budget.<key> or <name>.<param>")
    return settings


def metric_declarations(suite: Suite, registry: PluginRegistry, names: Iterable[str]) -> dict[str, MetricDeclaration]:
    """Metric name -> its declaration: the spec's, with the suite's threshold where the suite sets one."""
    return {name: registry.get("metric", name).spec.declaration(suite.model.thresholds.get(name)) for name in names}
