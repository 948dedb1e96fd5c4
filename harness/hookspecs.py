"""The plugin author's reference: every hook a harness plugin can implement.

A plugin is any importable module (or object) with functions marked ``@harness.hookimpl`` whose names match
the hooks below. Publish it by declaring an entry point in the ``harness`` group of your package::

    [project.entry-points.harness]
    my-plugin = "my_package.plugin"

and ``pip install`` it: ``harness plugins`` lists it, ``harness plugins check my-plugin`` checks it. For one
invocation without installing, ``harness -p my_package.plugin ...`` loads a module directly.

Rules the harness keeps, so that plugins can rely on them:

* Hooks are always called with keyword arguments; a hook implementation may accept any subset of the
  arguments a spec lists. New arguments are only ever added to a spec, never removed or renamed.
* Registration hooks (``harness_algorithms``, ``harness_environments``, ``harness_metrics``,
  ``harness_suites``) are called once per process, in the driver and in each worker. They must be cheap:
  return specs whose callables are ``"module:attribute"`` strings and import heavy libraries (torch,
  gymnasium, cupy) only inside those callables.
* A failing hook never takes the harness down: the error is recorded against the plugin, shown by
  ``harness plugins`` and, with ``--strict``, turned into a failure.
* Names are global: two plugins registering the same algorithm, environment or metric name is an error that
  names both, and neither is used.
* A plugin module may set ``HARNESS_API_VERSION = "1.0"`` (the hook API it was written against, see
  :data:`harness.HOOK_API_VERSION`); a plugin whose major version differs from the harness's is refused.
* What a cell's callables get from the harness is the :class:`harness.CellContext`: the seed, the device,
  the budget, a deadline, a checkpoint folder, ``context.log(name, value, step)`` for curves (names MLflow
  accepts: letters, digits, ``_ - . : /`` and spaces), ``context.log_input(...)`` for the datasets the cell
  read (their origin, path and sha256 reach the record), and ``context.progress(done, total, note)`` for long
  loops (rate-limited, so it can be called every step; the run display shows it live).
* A metric that comes out NaN or inf fails its cell; a cell's prints and warnings go to its log file, never
  into ``harness run --json``.

Where each hook runs:

=========================  ==========  ======================================================================
hook                       process     when
=========================  ==========  ======================================================================
harness_algorithms         both        plugin discovery
harness_environments       both        plugin discovery
harness_metrics            both        plugin discovery
harness_suites             driver      plugin discovery (``harness list suites``, ``harness run NAME``)
harness_cli_commands       driver      building the ``harness`` command line
harness_execute_cell       worker      around each cell (``wrapper=True`` implementations wrap it)
harness_run_started        driver      once a suite run has been expanded and tracking started
harness_cell_finished      driver      each cell's result, as soon as it is journaled
harness_run_finished       driver      after the last cell, before the summary is printed
=========================  ==========  ======================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from harness.context import CellContext
    from harness.record import Cell, CellResult, RunInfo
    from harness.specs import AlgorithmSpec, EnvironmentSpec, MetricSpec

PROJECT_NAME = "harness"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def harness_algorithms() -> Sequence[AlgorithmSpec]:
    """Return the algorithms this plugin provides.

    Called once per process at discovery. Return a list of :class:`harness.AlgorithmSpec`; give ``run`` as a
    ``"module:function"`` string so listing the plugin imports nothing heavy. ``run`` is called as
    ``run(environment=env, params=params, context=context)`` where ``env`` is what the environment's ``make``
    returned, ``params`` the resolved parameter dict and ``context`` a :class:`harness.CellContext`; it
    returns a JSON-serialisable mapping (the raw outcome).
    """


@hookspec
def harness_environments() -> Sequence[EnvironmentSpec]:
    """Return the environments (workloads, datasets, models) this plugin provides.

    Called once per process at discovery. ``make`` is called as ``make(params=params, context=context)`` and
    returns the object algorithms of the spec's ``task_kind`` consume; the ``task_kind`` string is the
    contract between environment and algorithm plugins (document the object's shape with the kind).
    """


@hookspec
def harness_metrics() -> Sequence[MetricSpec]:
    """Return the metrics this plugin provides.

    ``compute`` is called as ``compute(outcome=outcome, environment=env, context=context)`` after the
    algorithm has run and every ``harness_execute_cell`` wrapper has finished, and returns a float or None
    (metric not applicable: nothing is logged). Declare ``unit`` and ``direction``; reports and regression
    verdicts depend on them.
    """


@hookspec
def harness_suites() -> Sequence[str | Path]:
    """Return paths of suite TOML files this plugin ships (for example inside its package data).

    They are listed by ``harness list suites`` and runnable by name (the file's ``name`` key). A suite file in
    the working directory's ``suites/`` folder with the same name takes precedence.
    """


@hookspec
def harness_cli_commands() -> Sequence[click.Command]:
    """Return extra ``click`` commands or groups to add to the ``harness`` command line.

    For example a group ``data`` with a subcommand that generates datasets. A command whose name is already
    taken (by the core or another plugin) is refused and reported against the plugin.
    """


@hookspec(firstresult=True)
def harness_execute_cell(cell: Cell, context: CellContext) -> Mapping[str, Any] | None:
    """Run one cell in the worker and return its raw outcome.

    The harness's own implementation makes the environment, runs the algorithm and returns its outcome.
    Plugins do not replace it: they wrap it with ``@hookimpl(wrapper=True)`` to measure or prepare around every
    cell (timers, memory probes, thread settings), writing what they measure to ``context.measurements``::

        @hookimpl(wrapper=True)
        def harness_execute_cell(cell, context):
            start = time.perf_counter()
            outcome = yield
            context.measurements["wall_time_s"] = time.perf_counter() - start
            return outcome

    A wrapper must ``yield`` exactly once and return the (possibly amended) outcome. Exceptions raised by the
    cell propagate through the ``yield``; re-raise them, the runner records the cell as failed.
    """


@hookspec
def harness_run_started(run: RunInfo) -> None:
    """A suite run has started (driver process): ``run`` names the suite, profile, cells and tracking run.

    Observers such as custom sinks open their files or connections here. Exceptions are reported as warnings
    and never stop the run.
    """


@hookspec
def harness_cell_finished(run: RunInfo, result: CellResult) -> None:
    """One cell finished, failed or was skipped (driver process); its result is already in the journal.

    Called in completion order, one result at a time. Keep it fast: it runs on the driver's result loop.
    """


@hookspec
def harness_run_finished(run: RunInfo, results: Sequence[CellResult]) -> None:
    """The suite run is over (driver process); ``results`` holds every cell of this invocation."""
