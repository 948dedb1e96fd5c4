"""Suite files: TOML validated with pydantic, then expanded into cells.

The format is documented in ``docs/suites.md``. Validation happens in two steps, both before anything runs:
the file's shape (pydantic: unknown keys, wrong types), then its meaning against the installed plugins
(unknown names, parameters that do not exist, algorithm/environment pairs of incompatible kinds).
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import BadInput
from harness.plugins import PluginRegistry, UnknownName
from harness.run import DEFAULT_MAX_CELLS
from harness.run.code_version import spec_code_version
from harness.specs import ParamError
from harness.tracking.record import Cell, ComponentRef


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_timeout(value: Any, where: str) -> float | None:
    """A timeout is a positive, finite number of seconds (or absent): the one check for files and ``--set``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _timeout_field(value: Any) -> float | None:
    return check_timeout(value, "timeout_s")


#: Seeds a cell may have: numpy's legacy seeding takes 0 to 2**32 - 1, and a seed outside would alias another
#: (seed 2**32 would draw what seed 0 draws, under another cell key).
MAX_SEED = 2**32 - 1


def check_seeds(value: Any, where: str) -> list[int]:
    """A list of seeds, each an integer from 0 to :data:`MAX_SEED`: the one check for files and ``--set``."""
    if not isinstance(value, list) or any(isinstance(seed, bool) or not isinstance(seed, int) for seed in value):
        raise ValueError(f"{where}: expected a list of integers, for example [0, 1, 2], got {value!r}")
    for index, seed in enumerate(value):
        if not 0 <= seed <= MAX_SEED:
            raise ValueError(
                f"{where}[{index}]: seed {seed} is out of range; seeds are integers from 0 to {MAX_SEED} "
                "(numpy's seeding range: another seed would draw what one of those draws)"
            )
    return value


def _seeds_field(value: Any) -> Any:
    return None if value is None else check_seeds(value, "seeds")


def _thresholds_field(value: dict[str, float]) -> dict[str, float]:
    for name, threshold in value.items():
        if not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold of {name!r} must be a positive fraction (0.05 = 5%), got {threshold!r}")
    return value


class Entry(_Strict):
    """An algorithm or environment in a matrix: a name, optional parameters, an optional sweep."""

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)

    def expand(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, params) for each point of the sweep; without a sweep, just the entry."""
        base_label = self.label or self.name
        if not self.sweep:
            return [(base_label, dict(self.params))]
        keys = sorted(self.sweep)
        points = []
        for values in itertools.product(*(self.sweep[key] for key in keys)):
            params = {**self.params, **dict(zip(keys, values, strict=True))}
            suffix = ",".join(f"{key}={value}" for key, value in zip(keys, values, strict=True))
            points.append((f"{base_label}[{suffix}]", params))
        return points


def _points(entry: Entry) -> int:
    count = 1
    for values in entry.sweep.values():
        count *= len(values)
    return count


def _entries(value: Any) -> Any:
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


class Matrix(_Strict):
    algorithms: list[Entry]
    environments: list[Entry]
    metrics: list[str] = Field(default_factory=list)
    seeds: list[int] | None = None

    _normalize_algorithms = field_validator("algorithms", "environments", mode="before")(_entries)
    _check_seeds = field_validator("seeds")(_seeds_field)


class Profile(_Strict):
    seeds: list[int] | None = None
    timeout_s: float | None = None
    budget: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    matrix: list[Matrix] | None = None
    description: str = ""

    _check_timeout = field_validator("timeout_s", mode="before")(_timeout_field)
    _check_seeds = field_validator("seeds")(_seeds_field)


class ReportOptions(_Strict):
    """The ``[report]`` table: how ``harness report`` presents the suite (kept in the run's ``suite.json``)."""

    #: Trade-off plots: pairs of metric names, ``[x, y]``, each drawn with its Pareto front.
    pareto: list[tuple[str, str]] = Field(default_factory=list)


class SuiteModel(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    description: str
    seeds: list[int] = Field(default_factory=lambda: [0])
    metrics: list[str] = Field(default_factory=list)
    timeout_s: float | None = None
    default_profile: str = "smoke"
    algorithms: list[Entry] | None = None
    environments: list[Entry] | None = None
    matrix: list[Matrix] = Field(default_factory=list)
    profiles: dict[str, Profile] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    report: ReportOptions = Field(default_factory=ReportOptions)

    _normalize = field_validator("algorithms", "environments", mode="before")(_entries)
    _check_timeout = field_validator("timeout_s", mode="before")(_timeout_field)
    _check_seeds = field_validator("seeds")(_seeds_field)
    _check_thresholds = field_validator("thresholds")(_thresholds_field)


class Suite:
    """A validated suite file."""

    def __init__(self, model: SuiteModel, path: Path) -> None:
        self.model = model
        self.path = path

    @property
    def name(self) -> str:
        return self.model.name

    def _check_threshold_metrics(self, registry: PluginRegistry) -> None:
        import difflib

        declared = {name for matrix in self.matrices(None) for name in matrix.metrics} | set(self.model.metrics)
        for profile in self.model.profiles.values():
            declared |= {name for matrix in profile.matrix or [] for name in matrix.metrics}
        for pair in self.model.report.pareto:
            for name in pair:
                if name not in declared:
                    close = difflib.get_close_matches(name, sorted(declared), n=3)
                    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                    raise BadInput(
                        f"{self.path}: [report] pareto names metric {name!r}, which the suite does not measure.{hint}"
                    )
        for name in self.model.thresholds:
            if name not in declared:
                close = difflib.get_close_matches(name, sorted(declared), n=3)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise BadInput(
                    f"{self.path}: [thresholds] names metric {name!r}, which the suite does not measure.{hint} "
                    f"Its metrics: {', '.join(sorted(declared)) or 'none'}"
                )

    def matrices(self, profile: Profile | None) -> list[Matrix]:
        if profile is not None and profile.matrix is not None:
            return profile.matrix
        matrices = list(self.model.matrix)
        if self.model.algorithms is not None or self.model.environments is not None:
            matrices.insert(
                0, Matrix(algorithms=self.model.algorithms or [], environments=self.model.environments or [])
            )
        return matrices

    def budget_keys(self) -> set[str]:
        """Every budget key some profile of this file sets: what ``--set budget.KEY`` may name."""
        return {key for profile in self.model.profiles.values() for key in profile.budget}

    def count_cells(self, profile: Profile, seeds: list[int], seeds_overridden: bool) -> int:
        """How many cells the profile expands to at most (before duplicate keys merge), computed without
        expanding: the product of the matrices' sizes."""
        total = 0
        for matrix in self.matrices(profile):
            matrix_seeds = seeds if seeds_overridden else (matrix.seeds or seeds)
            algorithms = sum(_points(entry) for entry in matrix.algorithms)
            environments = sum(_points(entry) for entry in matrix.environments)
            total += algorithms * environments * len(matrix_seeds)
        return total

    def profile(self, name: str | None) -> tuple[str, Profile]:
        chosen = name or self.model.default_profile
        if chosen in self.model.profiles:
            return chosen, self.model.profiles[chosen]
        if name is None and not self.model.profiles:
            return chosen, Profile()
        available = ", ".join(sorted(self.model.profiles)) or "none"
        raise BadInput(f"{self.path}: suite {self.name!r} has no profile {chosen!r} (profiles: {available})")

    def expand(
        self,
        registry: PluginRegistry,
        profile_name: str | None = None,
        overrides: Sequence[str] = (),
        max_cells: int = DEFAULT_MAX_CELLS,
    ) -> tuple[str, list[Cell]]:
        """Resolve names and parameters against the plugins and return ``(profile, cells)``.

        Raises :class:`BadInput` naming the file and key for anything that cannot run, and for a profile of
        more than ``max_cells`` cells (counted before anything is expanded).
        """
        chosen, profile = self.profile(profile_name)
        settings = _apply_overrides(self, profile, overrides)
        count = self.count_cells(profile, settings["seeds"], settings["seeds_overridden"])
        if count > max_cells:
            raise BadInput(
                f"{self.path}: profile {chosen!r} has {count:,} cells, more than the limit of {max_cells:,}. "
                "Check the sweeps and seeds for a typo, or raise the limit with --max-cells N."
            )
        self._check_threshold_metrics(registry)
        budget = dict(settings["budget"])  # one mapping shared by the cells (Cell is frozen; nobody mutates it)
        cells: list[Cell] = []
        seen: set[str] = set()
        for index, matrix in enumerate(self.matrices(profile)):
            where = f"{self.path}: matrix[{index}]"
            seeds = settings["seeds"] if settings["seeds_overridden"] else (matrix.seeds or settings["seeds"])
            metric_names = list(dict.fromkeys([*self.model.metrics, *matrix.metrics]))
            metrics = [_lookup(registry, "metric", name, f"{where}.metrics") for name in metric_names]
            metric_code = {metric.spec.name: spec_code_version(metric.spec) for metric in metrics}
            for algorithm_entry, environment_entry in itertools.product(matrix.algorithms, matrix.environments):
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
                        if key in seen:
                            continue
                        seen.add(key)
                        cells.append(
                            Cell(
                                suite=self.name,
                                profile=chosen,
                                algorithm=algorithm_ref,
                                environment=environment_ref,
                                seed=seed,
                                metrics=tuple(metric_names),
                                budget=budget,
                                timeout_s=settings["timeout_s"],
                                label=f"{algorithm_label}/{environment_label}/seed={seed}",
                                key=key,
                                task_kind=environment.spec.task_kind,
                                algorithm_label=algorithm_label,
                                environment_label=environment_label,
                                metric_code=metric_code,
                                config_key=config_key,
                            )
                        )
        _check_param_overrides_used(self, settings["params"], registry)
        return chosen, cells


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


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid suite file"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (see docs/suites.md for the keys a suite file may have)"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


SELECTION_FIELDS = ("algorithm", "environment", "seed")


def parse_selection(expressions: Sequence[str]) -> list[dict[str, str]]:
    """``--only`` expressions as lists of (field, glob) conditions.

    One expression is comma-separated ``FIELD=GLOB`` conditions that must all hold (``algorithm=iql,
    environment=hopper-*``); repeating ``--only`` selects cells matching any expression. Fields: ``algorithm``
    and ``environment`` (the spec's name or the suite's label), ``seed``, or ``NAME.PARAM`` for a parameter.
    """
    selection = []
    for expression in expressions:
        conditions: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in expression.split(","))):
            field_name, sep, pattern = part.partition("=")
            field_name = field_name.strip()
            if not sep or not field_name:
                raise BadInput(
                    f"--only {expression!r}: expected FIELD=GLOB[,FIELD=GLOB...], for example "
                    "'algorithm=iql,environment=hopper-*' (fields: algorithm, environment, seed, NAME.PARAM)"
                )
            if field_name not in SELECTION_FIELDS and "." not in field_name:
                raise BadInput(
                    f"--only {expression!r}: unknown field {field_name!r}; use algorithm, environment, seed or "
                    "NAME.PARAM"
                )
            conditions[field_name] = pattern.strip()
        if conditions:
            selection.append(conditions)
    return selection


def cell_matches(cell: Cell, conditions: Mapping[str, str]) -> bool:
    from fnmatch import fnmatchcase

    for field_name, pattern in conditions.items():
        if field_name == "algorithm":
            values = [cell.algorithm.name, cell.algorithm_label]
        elif field_name == "environment":
            values = [cell.environment.name, cell.environment_label]
        elif field_name == "seed":
            values = [str(cell.seed)]
        else:
            component, _, param = field_name.rpartition(".")
            values = []
            for ref, label in ((cell.algorithm, cell.algorithm_label), (cell.environment, cell.environment_label)):
                if component in (ref.name, label) and param in ref.params:
                    values.append(str(ref.params[param]))
        if not any(fnmatchcase(value, pattern) for value in values):
            return False
    return True


def select_cells(cells: list[Cell], expressions: Sequence[str], where: str) -> list[Cell]:
    """The cells matching any ``--only`` expression; :class:`BadInput` when none does."""
    selection = parse_selection(expressions)
    if not selection:
        return cells
    chosen = [cell for cell in cells if any(cell_matches(cell, conditions) for conditions in selection)]
    if not chosen:
        names = sorted({cell.algorithm_label for cell in cells}) + sorted({cell.environment_label for cell in cells})
        raise BadInput(
            f"{where}: --only {' | '.join(expressions)} selects none of its {len(cells)} cells "
            f"(labels: {', '.join(names[:20])})"
        )
    return chosen


def read_suite_text(path: Path) -> str:
    """The file's text; :class:`BadInput` naming the file (and the byte offset of the first byte that is not
    UTF-8, which TOML requires) when it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read suite file {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInput(
            f"{path}: not UTF-8 text (byte {exc.start}, line {line}: {raw[exc.start : exc.start + 1]!r}); "
            "TOML suite files must be UTF-8: re-save it as UTF-8 (iconv -f latin1 -t utf-8)"
        ) from None


def load_suite_file(path: Path) -> Suite:
    """Parse and validate one suite file; raise :class:`BadInput` with the file, line or key at fault."""
    text = read_suite_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: TOML syntax error: {exc}") from None
    try:
        model = SuiteModel.model_validate(data)
    except ValidationError as exc:
        raise BadInput(_format_validation_error(path, exc)) from None
    return Suite(model, path)


def suite_search_dirs() -> list[Path]:
    return [Path.cwd() / "suites"]


def available_suites(registry: PluginRegistry, problems: dict[Path, str] | None = None) -> dict[str, tuple[Path, str]]:
    """Suite name -> (file, source) for ./suites/*.toml and plugin-shipped suites (local files win).

    A file that cannot be read or parsed does not hide the others: it is listed under its file name, and
    what is wrong with it goes into ``problems`` (file -> message) when given.
    """
    found: dict[str, tuple[Path, str]] = {}
    for path, record in registry.suite_files:
        found[_suite_name(path, problems)] = (path, f"plugin {record.name}")
    for directory in suite_search_dirs():
        for path in sorted(directory.glob("*.toml")):
            found[_suite_name(path, problems)] = (path, str(directory))
    return found


def _suite_name(path: Path, problems: dict[Path, str] | None = None) -> str:
    try:
        name = tomllib.loads(read_suite_text(path)).get("name")
    except BadInput as exc:
        name = None
        if problems is not None:
            problems[path] = str(exc)
    except tomllib.TOMLDecodeError as exc:
        name = None
        if problems is not None:
            problems[path] = f"{path}: TOML syntax error: {exc}"
    return name if isinstance(name, str) else path.stem


def resolve_suite(reference: str, registry: PluginRegistry) -> Suite:
    """A suite by path or by name; an unknown name lists the suites that exist."""
    path = Path(reference)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise BadInput(f"suite file {path} does not exist")
        return load_suite_file(path)
    suites = available_suites(registry)
    if reference in suites:
        return load_suite_file(suites[reference][0])
    import difflib

    close = difflib.get_close_matches(reference, list(suites), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise BadInput(
        f"unknown suite {reference!r}.{hint} Available: {', '.join(sorted(suites)) or 'none'} "
        "(give a path to a .toml file, or see `harness list suites`)"
    )


def metric_thresholds(suite: Suite, registry: PluginRegistry, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Metric name -> unit, direction, threshold (suite override over spec default), description, and what
    the report and ``compare`` need to know: whether it may be pooled across tasks, whether it depends on the
    hardware (``None``: decided from its unit)."""
    table = {}
    for name in names:
        spec = registry.get("metric", name).spec
        table[name] = {
            "unit": spec.unit,
            "direction": spec.direction,
            "threshold": suite.model.thresholds.get(name, spec.threshold),
            "description": spec.description,
            "comparable_across_tasks": bool(getattr(spec, "comparable_across_tasks", False)),
            "depends_on_hardware": getattr(spec, "depends_on_hardware", None),
        }
    return table
