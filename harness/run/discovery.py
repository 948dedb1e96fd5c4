"""Finding suites: files in ``suites/`` folders and those plugins ship, by name or path."""

from __future__ import annotations

import tomllib
from pathlib import Path

from harness.errors import BadInput
from harness.plugins import PluginRegistry
from harness.run.suite import Suite, load_suite_file, read_suite_text


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
