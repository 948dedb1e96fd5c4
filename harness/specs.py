"""What a plugin registers: algorithm, environment and metric specs.

A spec is plain data plus one callable. The callable may be given as a ``"module:attribute"`` string so that
heavy libraries (torch, gymnasium, cupy) are imported only when a cell actually uses the spec, never when
``harness list`` shows it.

The names and parameter names declared here are the ones that appear in MLflow params, reports and comparisons.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from harness.record import MetricDeclaration, is_bool

if TYPE_CHECKING:
    from harness.context import CellContext

Direction = Literal["higher", "lower"]

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_JSON_SCALARS = (bool, int, float, str, type(None))


class SpecError(ValueError):
    """A spec is malformed; the message says which field and why."""


class ParamError(ValueError):
    """A parameter value does not fit its declaration."""


@dataclass(frozen=True)
class Param:
    """One parameter of an algorithm, environment or metric.

    The type is the type of ``default``; values given in a suite or with ``--set`` are checked against it
    (an int is accepted where a float is declared). ``choices`` restricts the value to a fixed set.
    """

    name: str
    default: Any
    description: str = ""
    choices: tuple[Any, ...] | None = None

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise :class:`ParamError` saying why."""
        expected = type(self.default)
        if self.default is None:
            coerced = value
        elif is_bool(self.default):
            if not is_bool(value):
                raise ParamError(f"expected true or false, got {value!r}")
            coerced = bool(value)
        elif expected is int:
            if is_bool(value) or not isinstance(value, int):
                raise ParamError(f"expected an integer, got {value!r}")
            coerced = value
        elif expected is float:
            if is_bool(value) or not isinstance(value, (int, float)):
                raise ParamError(f"expected a number, got {value!r}")
            coerced = float(value)
        elif expected is str:
            if not isinstance(value, str):
                raise ParamError(f"expected a string, got {value!r}")
            coerced = value
        elif expected in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise ParamError(f"expected a list, got {value!r}")
            coerced = list(value)
        else:
            coerced = value
        if self.choices is not None and coerced not in self.choices:
            raise ParamError(f"{coerced!r} is not one of {list(self.choices)}")
        return coerced


@dataclass(frozen=True)
class Resources:
    """What one cell needs from a machine; executors that schedule (Ray) place cells by it.

    ``gpus > 0``: the cell cannot run without a GPU (``context.device`` is ``"cuda"``; without one the cell is
    skipped). ``uses_gpu=True``: the cell runs on either and goes to a GPU when the run's ``--device`` allows
    it (``auto``, the default: when one is visible to the worker; ``cuda``: always, skipping the cell where no
    GPU is visible; ``cpu``: never). Everything else runs on the CPU.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 0
    uses_gpu: bool = False


Requirement = Callable[[], "str | None"] | str | None


@dataclass(frozen=True)
class _Spec:
    name: str
    version: str
    description: str

    def _check_common(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name):
            raise SpecError(
                f"name {self.name!r} must be lower-case letters, digits, '_', '-' or '.', starting with a "
                "letter or digit"
            )
        if not isinstance(self.version, str) or not self.version:
            raise SpecError(f"{self.name}: version must be a non-empty string, got {self.version!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise SpecError(f"{self.name}: description must be a non-empty string")
        params = getattr(self, "params", ())
        if not isinstance(params, (tuple, list)):
            raise SpecError(f"{self.name}: params must be a tuple of Param, got {type(params).__name__}")
        seen: set[str] = set()
        for param in params:
            if not isinstance(param, Param):
                raise SpecError(f"{self.name}: params must hold Param objects, got {param!r}")
            if param.name in seen:
                raise SpecError(f"{self.name}: parameter {param.name!r} is declared twice")
            if not isinstance(param.default, (*_JSON_SCALARS, list, tuple)):
                raise SpecError(
                    f"{self.name}: parameter {param.name!r} default {param.default!r} is not a "
                    "bool, int, float, str, list or None"
                )
            seen.add(param.name)
        resources = getattr(self, "resources", Resources())
        if not isinstance(resources, Resources):
            raise SpecError(f"{self.name}: resources must be a Resources, got {resources!r}")

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in getattr(self, "params", ())}

    def param(self, name: str) -> Param | None:
        return next((p for p in getattr(self, "params", ()) if p.name == name), None)

    def resolve_params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``overrides``; an unknown name or a bad value raises :class:`ParamError`."""
        resolved = self.defaults
        for key, value in overrides.items():
            param = self.param(key)
            if param is None:
                known = ", ".join(sorted(resolved)) or "none"
                raise ParamError(f"{self.name} has no parameter {key!r} (its parameters: {known})")
            try:
                resolved[key] = param.validate(value)
            except ParamError as exc:
                raise ParamError(f"{self.name}.{key}: {exc}") from None
        return resolved

    def unavailable_reason(self) -> str | None:
        """None when the spec can run here, else a sentence saying what is missing and how to get it."""
        requires = getattr(self, "requires", None)
        if requires is None:
            return None
        try:
            return resolve_callable(requires)()
        except Exception as exc:  # an availability probe must never take the listing down
            return f"availability check failed: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class AlgorithmSpec(_Spec):
    """An algorithm: something that consumes an environment and produces an outcome.

    ``run(environment=..., params=..., context=...)`` returns a JSON-serialisable mapping (the raw outcome that
    metrics read and that is stored as the cell's artifact). ``task_kinds`` lists the environment kinds it can
    run on; the runner refuses any other pairing before anything runs.
    """

    task_kinds: tuple[str, ...] = ()
    run: Callable[..., Mapping[str, Any]] | str = ""
    params: tuple[Param, ...] = ()
    resources: Resources = field(default_factory=Resources)
    requires: Requirement = None

    def check(self) -> None:
        self._check_common()
        if not self.task_kinds or not all(isinstance(k, str) and k for k in self.task_kinds):
            raise SpecError(f"{self.name}: task_kinds must be a non-empty tuple of strings")
        _check_callable(self.name, "run", self.run)


@dataclass(frozen=True)
class EnvironmentSpec(_Spec):
    """An environment: a workload, a dataset with an evaluation env, a model with its data.

    ``make(params=..., context=...)`` returns whatever object the algorithms of its ``task_kind`` expect; the
    kind names that contract. If the object has a ``close()`` method the runner calls it after the cell.
    """

    task_kind: str = ""
    make: Callable[..., Any] | str = ""
    params: tuple[Param, ...] = ()
    resources: Resources = field(default_factory=Resources)
    requires: Requirement = None

    def check(self) -> None:
        self._check_common()
        if not isinstance(self.task_kind, str) or not self.task_kind:
            raise SpecError(f"{self.name}: task_kind must be a non-empty string")
        _check_callable(self.name, "make", self.make)


@dataclass(frozen=True)
class MetricSpec(_Spec):
    """A metric: a number computed from a cell's outcome.

    ``compute(outcome=..., environment=..., context=...)`` returns a float, or None when the metric does not
    apply to this cell (then nothing is logged). ``direction`` says whether higher or lower is better;
    ``threshold`` is the relative change that counts as a regression by default (suites and the command line
    may override it). ``task_kinds`` empty means the metric applies to every kind.
    """

    unit: str = ""
    direction: Direction = "higher"
    compute: Callable[..., float | None] | str = ""
    task_kinds: tuple[str, ...] = ()
    threshold: float = 0.05
    requires: Requirement = None
    # Whether values on different environments mean the same thing (normalized scores, success rates), so
    # a report may pool them into one ranking; otherwise algorithms are ranked per environment only.
    comparable_across_tasks: bool = False
    # Whether the value changes with the machine (timings, throughput, memory): `compare` refuses runs from
    # different hardware only for such metrics. None: decided from the unit (time, rate or memory units).
    depends_on_hardware: bool | None = None

    def check(self) -> None:
        self._check_common()
        if not isinstance(self.unit, str) or not self.unit:
            raise SpecError(f"{self.name}: unit must be a non-empty string such as 's', 'GB/s' or '1'")
        if self.direction not in ("higher", "lower"):
            raise SpecError(f"{self.name}: direction must be 'higher' or 'lower', got {self.direction!r}")
        if not isinstance(self.threshold, (int, float)) or self.threshold < 0:
            raise SpecError(f"{self.name}: threshold must be a non-negative number")
        _check_callable(self.name, "compute", self.compute)

    def declaration(self, threshold: float | None = None) -> MetricDeclaration:
        """What a suite run stores about this metric, with the suite's ``threshold`` where it sets one."""
        return MetricDeclaration(
            name=self.name,
            unit=self.unit,
            direction=self.direction,
            threshold=self.threshold if threshold is None else float(threshold),
            description=self.description,
            comparable_across_tasks=self.comparable_across_tasks,
            depends_on_hardware=self.depends_on_hardware,
        )


Spec = AlgorithmSpec | EnvironmentSpec | MetricSpec


def _check_callable(name: str, field_name: str, value: Any) -> None:
    if callable(value):
        return
    if isinstance(value, str) and re.match(r"^[\w.]+:[\w.]+$", value):
        return
    raise SpecError(f"{name}: {field_name} must be a callable or a 'module:attribute' string, got {value!r}")


def resolve_callable(target: Callable[..., Any] | str) -> Callable[..., Any]:
    """Import a ``"module:attribute"`` string (this is where heavy imports happen), or return the callable."""
    if callable(target):
        return target
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"{target!r} does not name a callable")
    return obj


def outcome_value(key: str) -> Callable[..., float | None]:
    """A ``compute`` function that reads ``outcome[key]`` (None when absent): the common case for metrics."""

    def compute(
        *, outcome: Mapping[str, Any], environment: Any = None, context: CellContext | None = None
    ) -> float | None:
        value = outcome.get(key)
        return None if value is None else float(value)

    compute.__name__ = f"outcome_value_{key}"
    return compute


_SpecT = TypeVar("_SpecT", AlgorithmSpec, EnvironmentSpec, MetricSpec)


def check_spec_list(value: Any, expected: type[_SpecT], hook: str) -> Sequence[_SpecT]:
    """Validate what a registration hook returned; raise SpecError naming the hook and the bad item."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise SpecError(f"{hook} must return a list of {expected.__name__}, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, expected):
            raise SpecError(f"{hook} must return {expected.__name__} objects, got {item!r}")
        item.check()
    return value
