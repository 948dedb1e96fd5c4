"""Commands for plugin authors: ``harness new-plugin`` and ``harness plugins check``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.output import console
from harness.plugins import PluginOptions
from harness.untrusted import markup as escape

_STATUS_STYLE = {"passed": "green", "failed": "bold red", "warning": "yellow", "skipped": "dim"}


def _plugin_options(ctx: click.Context) -> PluginOptions:
    """The root command's -p/--disable options, when run under ``harness``; plain discovery otherwise."""
    state = ctx.find_root().obj
    if state is not None and hasattr(state, "plugin_options"):
        options: PluginOptions = state.plugin_options()
        return options
    return PluginOptions()


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["algorithm", "environment", "metric"]),
    help="What the plugin provides (repeatable; default: all three, which also gives it a runnable suite).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Folder in which the package folder harness-NAME is created.",
)
@click.option("--force", is_flag=True, help="Write into an existing, non-empty package folder.")
def new_plugin_command(name: str, kinds: tuple[str, ...], directory: Path, force: bool) -> None:
    """Write a ready-to-install plugin package named harness-NAME.

    \b
    It contains a pyproject.toml declaring the entry point (group 'harness'), a module with one example
    spec per kind and its hook implementations, a suite the plugin ships (with an algorithm and an
    environment), a README and tests that use the harness.testing pytest plugin. Then:
      pip install -e harness-NAME
      harness plugins check NAME
      harness run NAME --profile smoke
    """
    from harness.authoring.scaffold import KINDS, PluginNames, create_plugin

    root = create_plugin(name, directory, kinds or KINDS, force=force)
    names = PluginNames.from_name(name)
    out = console()
    out.print(f"[green]created[/] {escape(str(root))}")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        out.print(f"  {escape(str(path.relative_to(root)))}", highlight=False)
    has_suite = (root / names.module / "suites").is_dir()
    out.print("\nnext steps:")
    out.print(f"  pip install -e {escape(str(root))}")
    out.print(f"  harness plugins check {names.plugin_name}")
    if has_suite:
        out.print(f"  harness run {names.plugin_name} --profile smoke")
    out.print(f"  pytest {escape(str(root / 'tests'))}")


@click.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--specs-only", is_flag=True, help="Check specs and parameters only; run no cell.")
@click.option(
    "--ignore",
    "ignore_keys",
    multiple=True,
    metavar="KEY",
    help="Outcome key allowed to differ between two runs with one seed (a measured time; repeatable).",
)
@click.pass_context
def check_command(ctx: click.Context, name: str, as_json: bool, specs_only: bool, ignore_keys: tuple[str, ...]) -> None:
    """Check that plugin NAME keeps the plugin contract; exit 0 if it does, 1 if not.

    \b
    Checks: it loads (import, hook names, hook API version, well-formed specs); listing it imports nothing
    heavy; specs are complete and typed and their names unique; parameters have typed defaults and a bad
    value gives a clear error; metrics declare unit and direction; each algorithm runs one smoke cell on a
    compatible environment (budget from the plugin's own suite's smoke profile); the same seed gives the same
    result. Every failure says what to fix. NAME is the entry-point name, the distribution or the module.
    """
    from harness.authoring.conformance import check_plugin

    report = check_plugin(name, options=_plugin_options(ctx), run_cells=not specs_only, ignore_outcome_keys=ignore_keys)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        out = console()
        for item in report.items:
            style = _STATUS_STYLE[item.status]
            text = f"[{style}]{item.status:>7}[/] {escape(item.check)}: {escape(item.subject)}"
            if item.message:
                text += f" [dim]- {escape(item.message)}[/]"
            out.print(text)
            if item.fix and item.status in ("failed", "warning"):
                out.print(f"          [bold]fix:[/] {escape(item.fix)}")
        counts = ", ".join(f"{n} {status}" for status, n in report.counts().items())
        verdict = "[green]conforms[/]" if report.ok else "[bold red]does not conform[/]"
        out.print(f"\nplugin {escape(report.plugin)!r} {verdict} ({counts})")
    ctx.exit(0 if report.ok else 1)


#: Commands the root ``harness`` group adds (see ``CORE_COMMAND_MODULES`` in harness/cli/main.py).
COMMANDS = [new_plugin_command]
#: Commands for the ``harness plugins`` group: ``harness plugins check NAME``.
PLUGINS_COMMANDS = [check_command]
