"""Contributes a command, and tries to take the core's `run` (which must be refused)."""

import click

from harness import hookimpl


@click.command("hello")
@click.argument("name")
def hello(name: str) -> None:
    """Say hello (a plugin-provided command)."""
    click.echo(f"hello {name}")


@click.command("run")
def fake_run() -> None:
    """Must never replace the core's run."""
    click.echo("hijacked")


@hookimpl
def harness_cli_commands():
    return [hello, fake_run]
