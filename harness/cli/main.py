"""The ``harness`` command line.

Exit codes: 0 success, 1 some cells failed (or a regression, for comparison commands), 2 bad input or a results
folder that cannot be written safely (a full disk, a planted symlink: the file is named).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from harness.cli.output import console, make_progress, print_error, print_notice, print_table
from harness.errors import BadInput, ResultsFolderError
from harness.plugins import PluginOptions, PluginRegistry, load_plugins
from harness.record import DEVICES
from harness.run import DEFAULT_MAX_CELLS
from harness.untrusted import markup, visible

#: Where a context caches the plugins' commands (click's ctx.meta is shared by every command of one invocation).
_EXTRA_COMMANDS_KEY = "harness_cli_extra_commands"
CORE_COMMAND_MODULES = ("harness.cli.reporting", "harness.cli.authoring", "harness.cli.bisect")


class State:
    """Options shared by every command, and the plugin registry built from them on first use."""

    def __init__(self, modules: tuple[str, ...], disabled: tuple[str, ...], strict: bool, results_dir: Path):
        self.modules = modules
        self.disabled = disabled
        self.strict = strict
        self.results_dir = results_dir
        self._registry: PluginRegistry | None = None

    def plugin_options(self, extra_modules: tuple[str, ...] = ()) -> PluginOptions:
        return PluginOptions(
            extra_modules=tuple(dict.fromkeys(self.modules + extra_modules)),
            disabled=self.disabled,
            strict=self.strict,
        )

    def registry(self, extra_modules: tuple[str, ...] = ()) -> PluginRegistry:
        if self._registry is None or extra_modules:
            self._registry = load_plugins(self.plugin_options(extra_modules))
        return self._registry


def _state(ctx: click.Context) -> State:
    state: State = ctx.find_root().obj
    return state


#: Root options a user may also give after the command name (``harness run smoke --results-dir r``), with
#: whether each takes a value. They mean the same wherever they stand, so they are moved before the command.
_ROOT_OPTIONS_ANYWHERE = {"--results-dir": True, "--disable": True, "--strict": False}
#: Root options that take a value: skipped over when looking for the command name.
_ROOT_VALUE_OPTIONS = ("-p", "--disable", "--results-dir")


def hoist_root_options(args: list[str]) -> list[str]:
    """``args`` with the root options found after the command name moved before it (up to a ``--``)."""
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "--":
        index += 2 if args[index] in _ROOT_VALUE_OPTIONS else 1
    if index >= len(args) or args[index] == "--":
        return args
    before, command, rest = args[:index], args[index], args[index + 1 :]
    moved: list[str] = []
    kept: list[str] = []
    position = 0
    while position < len(rest):
        token = rest[position]
        if token == "--":
            kept.extend(rest[position:])
            break
        name = token.split("=", 1)[0]
        takes_value = _ROOT_OPTIONS_ANYWHERE.get(name)
        if takes_value is None:
            kept.append(token)
        elif takes_value and "=" not in token and position + 1 < len(rest):
            moved.extend(rest[position : position + 2])
            position += 1
        else:
            moved.append(token)
        position += 1
    return [*before, *moved, command, *kept]


class HarnessGroup(click.Group):
    """The root group: core commands plus those plugins contribute through ``harness_cli_commands``."""

    def _extra_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        cached = ctx.meta.get(_EXTRA_COMMANDS_KEY)
        if cached is not None:
            return cached
        commands: dict[str, click.Command] = {}
        for module_name in CORE_COMMAND_MODULES:
            try:
                module = __import__(module_name, fromlist=["COMMANDS"])
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            for command in getattr(module, "COMMANDS", []):
                commands[command.name] = command
        root = ctx.find_root()
        state = root.obj
        if not isinstance(state, State):
            # Click resolves a subcommand before the root callback has run; the root's options are parsed by
            # then, so build the state from them (the callback reuses it).
            params = root.params
            state = root.obj = State(
                tuple(params.get("modules") or ()),
                tuple(params.get("disabled") or ()),
                bool(params.get("strict")),
                Path(params.get("results_dir") or os.environ.get("HARNESS_RESULTS_DIR", "results")),
            )
        if isinstance(state, State):
            try:
                registry = state.registry()
            except BadInput:
                registry = None
            if registry is not None:
                for impl in registry.pm.hook.harness_cli_commands.get_hookimpls():
                    record = next((r for r in registry.plugins.values() if r.name == impl.plugin_name), None)
                    try:
                        provided: list[Any] = list(impl.function() or [])  # type: ignore[call-overload]
                    except Exception as exc:
                        if record is not None:
                            from harness.plugins import PluginProblem

                            record.problems.append(PluginProblem(record.name, "hook harness_cli_commands", f"{exc}"))
                        continue
                    for command in provided:
                        if command.name in self.commands or command.name in commands:
                            if record is not None:
                                from harness.plugins import PluginProblem

                                record.problems.append(
                                    PluginProblem(
                                        record.name,
                                        "hook harness_cli_commands",
                                        f"command {command.name!r} is already taken; rename it",
                                    )
                                )
                            continue
                        commands[command.name] = command
        ctx.meta[_EXTRA_COMMANDS_KEY] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._extra_commands(ctx)})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_root_options(args))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._extra_commands(ctx).get(cmd_name)


@click.group(cls=HarnessGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-p",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Load a plugin module for this invocation (repeatable), e.g. -p my_package.plugin.",
)
@click.option("--disable", "disabled", multiple=True, metavar="NAME", help="Do not load this plugin (repeatable).")
@click.option("--strict", is_flag=True, help="Treat any plugin problem (import error, bad spec) as an error.")
@click.option(
    "--results-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: os.environ.get("HARNESS_RESULTS_DIR", "results"),
    show_default="results (or $HARNESS_RESULTS_DIR)",
    help="Where the journal, checkpoints, caches and the embedded MLflow store live.",
)
@click.version_option(package_name="harness")
@click.pass_context
def cli(ctx: click.Context, modules: tuple[str, ...], disabled: tuple[str, ...], strict: bool, results_dir: Path):
    """Run ML benchmark suites from plugins and track every result in MLflow.

    \b
    Typical session:
      harness plugins                      what is installed, and any load errors
      harness list algorithms              what a suite can use
      harness run smoke                    run suites/smoke.toml (profile 'smoke')
      mlflow ui --backend-store-uri sqlite:///results/mlflow.db

    Plugins are found through the 'harness' entry-point group; set HARNESS_DISABLE_PLUGIN_AUTOLOAD=1 to load
    only the modules given with -p.
    """
    if not isinstance(ctx.obj, State):
        ctx.obj = State(modules, disabled, strict, results_dir)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins: distribution, version, module, what each provides, and any load error.

    A plugin that failed to import or returned a malformed spec is listed with the error; the others still
    work. Use `harness --strict plugins` to make any problem an error (exit code 2).
    """
    if ctx.invoked_subcommand is not None:
        return
    registry = _state(ctx).registry()
    root = ctx.find_root()
    if isinstance(root.command, HarnessGroup):
        root.command._extra_commands(root)  # records refused plugin commands as problems of their plugins
    records = [record.to_dict() for record in registry.plugins.values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    rows = []
    for record in registry.plugins.values():
        provides = ", ".join(f"{len(names)} {kind}" for kind, names in sorted(record.provides.items()))
        rows.append(
            [
                record.name,
                record.distribution or "-",
                record.version or "-",
                record.module,
                record.status,
                provides or "-",
            ]
        )
    print_table("Plugins", ["name", "distribution", "version", "module", "status", "provides"], rows)
    for problem in registry.problems:
        print_error(str(problem))
    if not registry.plugins:
        console(stderr=True).print("no plugins found (install one, or load a module with -p)")


def _add_plugins_subcommands() -> None:
    from harness.cli.authoring import PLUGINS_COMMANDS

    for command in PLUGINS_COMMANDS:
        plugins.add_command(command)


_add_plugins_subcommands()

_KINDS = {"algorithms": "algorithm", "environments": "environment", "metrics": "metric"}


@cli.command("list")
@click.argument("kind", type=click.Choice(["algorithms", "environments", "metrics", "suites"]))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def list_command(ctx: click.Context, kind: str, as_json: bool) -> None:
    """List the algorithms, environments, metrics or suites available to `harness run`.

    Specs whose requirements are missing here (a GPU, an optional package) are listed with the reason.
    """
    registry = _state(ctx).registry()
    if kind == "suites":
        from harness.run.discovery import available_suites

        problems: dict[Path, str] = {}
        suites = available_suites(registry, problems)
        entries: list[dict[str, Any]] = [
            {"name": name, "path": str(path), "source": source, "problem": problems.get(path)}
            for name, (path, source) in suites.items()
        ]
        if as_json:
            click.echo(json.dumps(entries, indent=2))
        else:
            rows = [[e["name"], e["path"], e["source"] + (" (unreadable)" if e["problem"] else "")] for e in entries]
            print_table("Suites", ["name", "path", "source"], rows)
        for message in problems.values():
            print_error(message)
        return
    entries = []
    for name in registry.names(_KINDS[kind]):  # type: ignore[arg-type]
        registered = registry.get(_KINDS[kind], name)  # type: ignore[arg-type]
        spec = registered.spec
        entry: dict[str, Any] = {
            "name": spec.name,
            "version": spec.version,
            "description": spec.description,
            "plugin": registered.plugin.name,
            "unavailable": spec.unavailable_reason(),
        }
        if kind == "algorithms":
            entry["task_kinds"] = list(spec.task_kinds)
        elif kind == "environments":
            entry["task_kind"] = spec.task_kind
        else:
            entry.update(unit=spec.unit, direction=spec.direction, threshold=spec.threshold)
        if kind != "metrics":
            entry["params"] = {p.name: p.default for p in spec.params}
        entries.append(entry)
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    columns = ["name", "version", "plugin", "kind" if kind != "metrics" else "unit / better", "description"]
    rows = []
    for e in entries:
        detail = (
            f"{e['unit']} / {e['direction']}"
            if kind == "metrics"
            else ", ".join(e.get("task_kinds", [])) or e.get("task_kind", "")
        )
        description = e["description"] + (f"  [unavailable: {e['unavailable']}]" if e["unavailable"] else "")
        rows.append([e["name"], e["version"], e["plugin"], detail, description])
    print_table(kind.capitalize(), columns, rows)


@cli.command()
@click.argument("suite")
@click.option("--profile", help="Budget profile: smoke (seconds), short (minutes), full, or the suite's own.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--tracking-uri",
    help="MLflow tracking URI (default: $HARNESS_TRACKING_URI or the embedded SQLite store).",
)
@click.option("--no-tracking", is_flag=True, help="Journal only; nothing goes to MLflow (sync later).")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a value, e.g. iql.batch_size=64."
)
@click.option("--no-resume", is_flag=True, help="Run every cell again instead of skipping finished ones.")
@click.option(
    "--only",
    multiple=True,
    metavar="FIELD=GLOB,...",
    help="Run only matching cells, e.g. --only 'algorithm=iql,environment=hopper-*' (fields: algorithm, "
    "environment, seed, NAME.PARAM; comma = and, repeat --only = or). The selection is recorded with the run.",
)
@click.option("-p", "modules", multiple=True, metavar="MODULE", help="Load a plugin module for this run.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address for --executor ray (default: start a local Ray).")
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where cells that can use a GPU run: auto (a GPU when one is visible), cpu, or cuda (skip cells "
    "where none is). Cells that need a GPU always get one.",
)
@click.option(
    "--dry-run", is_flag=True, help="List the cells (and which a resume would skip) without running anything."
)
@click.option(
    "--max-cells",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_CELLS,
    show_default=True,
    help="Refuse a suite that expands to more cells than this (counted before expanding): a typo in a sweep "
    "should not start a million-cell run.",
)
@click.option(
    "--show-output",
    is_flag=True,
    help="Show the cells' own output (prints, warnings) on stderr; by default it goes to each cell's log "
    "(results/logs/<key>/), and the end of it is shown for cells that fail.",
)
@click.option(
    "--repo",
    "repository",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The git checkout of the code under test: its full commit SHA and dirty flag are recorded with the run "
    "(default: the suite's `repository`, else the suite file's checkout, else the working directory's).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run summary as JSON on stdout (and nothing else there)."
)
@click.pass_context
def run(
    ctx: click.Context,
    suite: str,
    profile: str | None,
    jobs: int,
    tracking_uri: str | None,
    no_tracking: bool,
    overrides: tuple[str, ...],
    no_resume: bool,
    only: tuple[str, ...],
    modules: tuple[str, ...],
    executor: str,
    address: str | None,
    device: str,
    dry_run: bool,
    max_cells: int,
    show_output: bool,
    repository: Path | None,
    as_json: bool,
) -> None:
    """Run SUITE (a suite name or a path to a .toml file) and track every cell in MLflow.

    Cells already finished by an earlier run of the same suite and profile are skipped (resume after a crash
    or a kill); --no-resume runs everything again. Exit code 0 if every cell succeeded or was skipped, 1 if
    any failed, 2 for bad input (nothing is run then).
    """
    from harness.run.discovery import resolve_suite
    from harness.run.runner import RunOptions, run_suite, summary_json
    from harness.tracking.uri import default_tracking_uri

    state = _state(ctx)
    registry = state.registry(modules)
    suite_obj = resolve_suite(suite, registry)
    if dry_run:
        _print_plan(
            suite_obj,
            registry,
            profile,
            overrides,
            state.results_dir,
            resume=not no_resume,
            as_json=as_json,
            max_cells=max_cells,
            only=only,
        )
        return
    uri = None if no_tracking else (tracking_uri or default_tracking_uri(state.results_dir))
    options = RunOptions(
        profile=profile,
        jobs=jobs,
        tracking_uri=uri,
        results_dir=state.results_dir,
        resume=not no_resume,
        overrides=overrides,
        executor=executor,
        ray_address=address,
        device=device,
        max_cells=max_cells,
        show_output=show_output,
        only=only,
        repository=repository,
    )
    err = console(stderr=True)
    # With --json, stdout holds the JSON alone: whatever the driver's libraries write to file descriptor 1
    # during the run (and workers inherit) goes to stderr.
    with stdout_to_stderr(as_json) as json_out:
        summary = run_suite(
            suite_obj, registry, options, progress=make_progress(err), notify=lambda message: print_notice(err, message)
        )
        if as_json:
            json_out.write(summary_json(summary) + "\n")
            json_out.flush()
    if not as_json:
        from harness.cli.output import print_summary

        print_summary(summary)
    if summary.tracking_error:
        err.print(
            f"[yellow]warning:[/] {markup(summary.tracking_error, keep_newlines=True)}\n"
            f"{summary.undelivered} result(s) are safe in {markup(summary.journal_path)}; run `harness sync` "
            "once the tracking server is reachable."
        )
    ctx.exit(summary.exit_code)


PLAN_TABLE_ROWS = 200


def _print_plan(
    suite: Any,
    registry: Any,
    profile: str | None,
    overrides: tuple[str, ...],
    results_dir: Path,
    *,
    resume: bool,
    as_json: bool,
    max_cells: int,
    only: tuple[str, ...] = (),
) -> None:
    """What ``harness run`` would do: the expanded cells, each marked done (a resume skips it) or to run."""
    from harness.run.selection import select_cells
    from harness.tracking.journal import Journal

    profile_name, cells = suite.expand(registry, profile, overrides, max_cells=max_cells)
    cells = select_cells(cells, only, str(suite.path))
    journal = Journal.for_suite(results_dir, suite.name, profile_name)
    journal_state = journal.read()
    if resume:
        from harness.run.runner import check_labels

        check_labels(suite, cells, journal_state, journal.path)
    finished = journal_state.finished_keys() if resume and journal.path.exists() else set()
    # A finished result of the same configuration under other code: the cell reruns because its code changed.
    by_config = {r.cell.compute_config_key(): r.cell for r in journal_state.latest().values() if r.status == "ok"}

    def state_of(cell: Any) -> str:
        if cell.key in finished:
            return "done"
        old = by_config.get(cell.compute_config_key()) if resume else None
        if old is not None:
            changed = [c for c, v in cell.code_versions.items() if old.code_versions.get(c) != v]
            return f"to run: code changed ({', '.join(changed)})"
        return "to run"

    plan: list[dict[str, Any]] = [
        {
            "label": cell.label,
            "key": cell.key,
            "state": state_of(cell),
            "code_versions": cell.code_versions,
            "algorithm": {"name": cell.algorithm.name, "params": dict(cell.algorithm.params)},
            "environment": {"name": cell.environment.name, "params": dict(cell.environment.params)},
            "seed": cell.seed,
            "budget": dict(cell.budget),
            "timeout_s": cell.timeout_s,
        }
        for cell in cells
    ]
    if as_json:
        click.echo(json.dumps({"suite": suite.name, "profile": profile_name, "cells": plan}, indent=2))
        return
    # A table of 10^5 rows takes a minute to draw and nobody reads it: the first rows, then counts by state.
    shown = plan[:PLAN_TABLE_ROWS]
    rows = [[c["label"], c["key"], c["state"], json.dumps(c["budget"], sort_keys=True)] for c in shown]
    to_run = sum(c["state"].startswith("to run") for c in plan)
    print_table(
        f"{suite.name} ({profile_name}): {to_run} of {len(plan)} cells to run", ["cell", "key", "state", "budget"], rows
    )
    if len(plan) > len(shown):
        from collections import Counter

        states = Counter(c["state"] for c in plan)
        click.echo(
            f"... and {len(plan) - len(shown):,} more cells (--json lists them all); by state: "
            + visible(", ".join(f"{count:,} {state}" for state, count in states.most_common()))
        )


@cli.command()
@click.option("--tracking-uri", help="Deliver to this URI instead of the one each journal was written for.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def sync(ctx: click.Context, tracking_uri: str | None, as_json: bool) -> None:
    """Deliver journaled results that never reached a store (server down, run killed, a new store).

    The journal records which store received each result under which parent run: each result reaches every
    store it is synced to once, under its configuration's parent in that store (created there if missing).
    Safe to repeat: results a store already has are recognised by their record id and not logged twice. A
    result the store refuses (a name MLflow does not accept) is reported and skipped, never retried forever
    nor allowed to hold back the others. Exit code 1 if some journal could not be delivered.
    """
    from harness.run.runner import sync_journals

    state = _state(ctx)
    reports = sync_journals(state.results_dir, tracking_uri)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        if not reports:
            click.echo("nothing to sync: every journaled result is in MLflow")
        for report in reports:
            if report.error:
                print_error(f"{report.journal}: {report.error}")
            else:
                refused = f", refused {report.refused}" if report.refused else ""
                click.echo(
                    visible(
                        f"{report.journal}: delivered {report.delivered}, already present {report.already_present}"
                        f"{refused} to {report.tracking_uri} ({report.store}, parent run {report.parent_run_id})"
                    )
                )
    ctx.exit(1 if any(r.error for r in reports) else 0)


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[Any]:
    """Point file descriptor 1 at stderr while the block runs; yield a writer to the real stdout."""
    if not enabled:
        yield sys.stdout
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real_stdout = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        yield real_stdout
    finally:
        real_stdout.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops its workers and keeps every finished result."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def interrupted_message(argv: list[str]) -> str:
    """What happened to an interrupted command's results, and what running it again will really do."""
    args = hoist_root_options(list(argv))
    index = 0
    while index < len(args) and args[index].startswith("-"):
        index += 2 if args[index] in _ROOT_VALUE_OPTIONS else 1
    command = args[index] if index < len(args) else ""
    if command in ("nightly", "calibrate"):
        return (
            f"interrupted; finished results are in the journal, and `harness sync` delivers them as an incomplete "
            f"run (never a baseline, left out of trends). `harness {command}` does not resume: running it again "
            "runs every cell from scratch as a new run."
        )
    if command == "run":
        return (
            "interrupted; finished results are in the journal. Running the same command again resumes: finished "
            "cells are skipped, an interrupted cell continues from its last checkpoint (or restarts if it wrote "
            "none), the rest run, all under the same MLflow run. Until then that run is incomplete."
        )
    return "interrupted"


def _exit_interrupted(interrupt: KeyboardInterrupt, argv: list[str]) -> None:
    print_error(interrupted_message(argv))
    sys.exit(143 if isinstance(interrupt, Terminated) else 130)  # 128 + SIGTERM or SIGINT


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns BadInput into exit code 2 with the message, never a traceback."""
    signal.signal(signal.SIGTERM, _terminate)
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        code = cli.main(args=argv, prog_name="harness", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        # Click turns Ctrl-C (and our SIGTERM) into Abort; say what happened to the run.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _exit_interrupted(exc.__cause__, arguments)
        print_error("aborted")
        sys.exit(130)
    except (BadInput, ResultsFolderError) as exc:
        print_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _exit_interrupted(exc, arguments)


if __name__ == "__main__":
    main()
