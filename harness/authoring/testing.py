"""A pytest plugin for harness plugin authors: the contract check and cell helpers as fixtures.

Enable it in the plugin's own ``pyproject.toml``::

    [tool.pytest.ini_options]
    addopts = "-p harness.testing"

(it is also registered through the ``pytest11`` entry point of the harness distribution). Then::

    def test_my_plugin_conforms(harness_plugin_check):
        harness_plugin_check("my-plugin")          # fails the test with the report's fixes

    def test_my_algorithm_learns(harness_cell_context):
        context = harness_cell_context(seed=0, budget={"gradient_steps": 100})
        env = make(params={...}, context=context)
        outcome = run(environment=env, params={...}, context=context)

This module only defines fixtures and helpers; it imports nothing but pytest and the light parts of the
harness, and it adds no hooks that change how pytest collects or runs tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.authoring.conformance import ConformanceReport
    from harness.context import CellContext
    from harness.plugins import PluginOptions
    from harness.record import CellResult


def check_plugin(name: str, **options: Any) -> ConformanceReport:
    """Run ``harness plugins check NAME`` in-process and return its report.

    See :mod:`harness.authoring.conformance`.
    """
    from harness.authoring.conformance import check_plugin as run_check

    return run_check(name, **options)


def assert_plugin_conforms(name: str, **options: Any) -> ConformanceReport:
    """Like :func:`check_plugin`, but raise ``AssertionError`` with every failure and its fix when one fails."""
    report = check_plugin(name, **options)
    if not report.ok:
        raise AssertionError(report.format())
    return report


def make_cell_context(
    directory: str | Path, *, seed: int = 0, budget: Mapping[str, Any] | None = None, **fields: Any
) -> CellContext:
    """A :class:`harness.CellContext` with its checkpoint and cache folders under ``directory``."""
    from harness.context import CellContext

    directory = Path(directory)
    return CellContext(
        seed=seed,
        budget=dict(budget or {}),
        checkpoint_dir=directory / "checkpoints" / f"seed-{seed}",
        cache_dir=directory / "cache",
        **fields,
    )


def run_cell(
    algorithm: str,
    environment: str,
    results_dir: str | Path,
    *,
    seed: int = 0,
    budget: Mapping[str, Any] | None = None,
    algorithm_params: Mapping[str, Any] | None = None,
    environment_params: Mapping[str, Any] | None = None,
    metrics: Sequence[str] = (),
    plugin_options: PluginOptions | None = None,
) -> CellResult:
    """Run one cell in this process exactly as a runner's worker would, and return its result.

    Names are looked up among the installed plugins; parameters are validated as a suite would (a bad one
    raises :class:`harness.ParamError`). The result's ``status``, ``metrics``, ``outcome`` and ``error`` say
    what happened; a failing cell does not raise.
    """
    from harness.authoring.conformance import fresh_registry
    from harness.plugins import PluginOptions
    from harness.record import ComponentRef, make_cell
    from harness.run.worker import execute_cell

    options = plugin_options or PluginOptions()
    registry = fresh_registry(options)

    def component(kind: Any, name: str, params: Mapping[str, Any] | None) -> ComponentRef:
        registered = registry.get(kind, name)
        return ComponentRef(
            name=name,
            version=registered.spec.version,
            plugin=registered.plugin.distribution or registered.plugin.name,
            plugin_version=registered.plugin.version or "0",
            params=registered.spec.resolve_params(dict(params or {})),
        )

    algorithm_ref = component("algorithm", algorithm, algorithm_params)
    environment_ref = component("environment", environment, environment_params)
    for metric in metrics:
        registry.get("metric", metric)
    metric_names = tuple(metrics)
    cell_budget = dict(budget or {})
    cell = make_cell(
        suite="test",
        profile="test",
        algorithm=algorithm_ref,
        environment=environment_ref,
        seed=seed,
        metrics=metric_names,
        budget=cell_budget,
        task_kind=registry.get("environment", environment).spec.task_kind,
    )
    return execute_cell(cell, options, results_dir)


@pytest.fixture
def harness_plugin_check(tmp_path: Path) -> Callable[..., ConformanceReport]:
    """``harness_plugin_check(name, **options)``: run the contract; a failing check fails the test."""

    def check(name: str, **options: Any) -> ConformanceReport:
        options.setdefault("results_dir", tmp_path / "harness-check")
        return assert_plugin_conforms(name, **options)

    return check


@pytest.fixture
def harness_cell_context(tmp_path: Path) -> Callable[..., CellContext]:
    """``harness_cell_context(seed=0, budget={...})``: a cell context with folders under ``tmp_path``."""

    def factory(seed: int = 0, budget: Mapping[str, Any] | None = None, **fields: Any) -> CellContext:
        return make_cell_context(tmp_path, seed=seed, budget=budget, **fields)

    return factory


@pytest.fixture
def harness_run_cell(tmp_path: Path) -> Callable[..., CellResult]:
    """``harness_run_cell(algorithm, environment, seed=0, budget=..., metrics=...)``: one cell, in-process."""

    def run(algorithm: str, environment: str, **options: Any) -> CellResult:
        return run_cell(algorithm, environment, tmp_path / "harness-cells", **options)

    return run
