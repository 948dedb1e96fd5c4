"""Suite files: the model (TOML validated with pydantic) and loading.

The format is documented in ``docs/suites.md``. Validation happens in two steps, both before anything runs:
the file's shape (pydantic: unknown keys, wrong types), here, then its meaning against the installed plugins
(unknown names, parameters that do not exist, algorithm/environment pairs of incompatible kinds) when
:mod:`harness.run.expansion` expands it into cells. :mod:`harness.run.selection` picks a subset of the cells
(``--only``); :mod:`harness.run.discovery` finds suites by name.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import BadInput
from harness.plugins import PluginRegistry
from harness.record import Cell
from harness.run import DEFAULT_MAX_CELLS


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


def _labels_field(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Entry(_Strict):
    """An algorithm or environment in a matrix: a name, optional parameters, an optional sweep.

    ``renamed_from`` lists labels the entry had before (without the swept ``[...]`` part): results recorded
    under an old label are the same cells, reported and compared under the new one (docs/suites.md).
    """

    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    renamed_from: list[str] = Field(default_factory=list)

    _check_renamed_from = field_validator("renamed_from", mode="before")(_labels_field)

    def renames(self) -> dict[str, str]:
        """Old label -> current label of each point of the entry (the swept suffix is kept)."""
        base = self.label or self.name
        found = {}
        for label, _ in self.expand():
            suffix = label[len(base) :]
            for old in self.renamed_from:
                found[f"{old}{suffix}"] = label
        return found

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
    #: The git checkout of the code under test, relative to the suite file (default: the suite file's own
    #: checkout, else the working directory's): its commit is recorded with every run.
    repository: str | None = None

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

    @property
    def repository(self) -> Path | None:
        """The declared repository under test (``repository = "..."``, relative to the suite file), or None."""
        if self.model.repository is None:
            return None
        return (self.path.parent / self.model.repository).resolve()

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

    def renames(self) -> dict[str, dict[str, str]]:
        """``{"algorithm": {old label: new label}, "environment": {...}}`` from every entry's ``renamed_from``,
        in every matrix of every profile: kept in the run's ``suite.json`` so readers show results recorded
        under an old label under the new one."""
        found: dict[str, dict[str, str]] = {"algorithm": {}, "environment": {}}
        tables = [*self.matrices(None), *(m for p in self.model.profiles.values() for m in p.matrix or [])]
        for matrix in tables:
            for entry in matrix.algorithms:
                found["algorithm"].update(entry.renames())
            for entry in matrix.environments:
                found["environment"].update(entry.renames())
        return found

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
        """``(profile, cells)``: :func:`harness.run.expansion.expand_suite` of this suite."""
        from harness.run.expansion import expand_suite

        return expand_suite(self, registry, profile_name, overrides, max_cells)


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid suite file"]
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (see docs/suites.md for the keys a suite file may have)"
        lines.append(f"  {location}: {message}")
    return "\n".join(lines)


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
    _check_names(model, path)
    return Suite(model, path)


def _check_names(model: SuiteModel, path: Path) -> None:
    """Profile names become journal, lock, report and calibration file names, and labels become run names and
    report rows: each goes through :func:`harness.paths.safe_name` (no separators, '..' or control characters),
    refused here with its key before anything runs."""
    from harness.paths import safe_name

    for name in model.profiles:
        safe_name(name, "profile", f"{path}: [profiles.{name!r}]")
    safe_name(model.default_profile, "profile", f"{path}: default_profile")
    matrices = [("matrix", list(model.matrix))]
    if model.algorithms is not None or model.environments is not None:
        matrices.append(("", [Matrix(algorithms=model.algorithms or [], environments=model.environments or [])]))
    matrices += [(f"profiles.{name!r}.matrix", list(p.matrix or [])) for name, p in model.profiles.items()]
    for prefix, tables in matrices:
        for index, matrix in enumerate(tables):
            where = f"{prefix}[{index}]." if prefix else ""
            for kind in ("algorithms", "environments"):
                for position, entry in enumerate(getattr(matrix, kind)):
                    if entry.label is not None:
                        safe_name(entry.label, "label", f"{path}: {where}{kind}[{position}].label")
                    for old in entry.renamed_from:
                        safe_name(old, "label", f"{path}: {where}{kind}[{position}].renamed_from")
