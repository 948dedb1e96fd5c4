"""Every file path the harness builds from a name goes through :func:`path_for` (and its check, :func:`safe_name`).

Names come from suite files (suite, profile), plugins, the command line and shared tracking stores (the
``harness.suite`` and ``harness.profile`` tags of a run someone else logged, or imported with ``harness import
pytest-benchmark --profile ...``). A name with a separator, ``..``, an absolute path or a control character
would put a journal, lock, report or export file outside the folder meant for it (a profile
``a/../../victim/uv`` truncated ``victim/uv.lock``), so such a name is refused with the name and where it came
from, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import BadInput
from harness.untrusted import visible

#: Longest name accepted: file systems allow 255 bytes per path component, and names are combined.
MAX_NAME_LENGTH = 100


class UnsafeName(BadInput):
    """A name that cannot be used in a file name (exit code 2, nothing written)."""


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be part of a file name; None when it can."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not text"
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "it names a folder ('.' or '..')"
    if ".." in name:
        return "it contains '..'"
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    found = sorted(char for char in separators if char in name)
    if found:
        return f"it contains the path separator {found[0]!r}"
    if os.path.isabs(name):
        return "it is an absolute path"
    if not name.isprintable():
        return "it contains control or invisible characters"
    if name != name.strip():
        return "it begins or ends with white space"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    return None


def safe_name(name: str, kind: str, source: str) -> str:
    """``name`` unchanged if it can be part of a file name; else :class:`UnsafeName` saying which ``kind`` of
    name (``profile``, ``suite``, ``label``...) it is, where it came from (``source``) and why it is refused."""
    problem = name_problem(name)
    if problem is not None:
        raise UnsafeName(
            f"{source}: {kind} name {visible(repr(name))} cannot be used: {problem}. Names become file names "
            "in the results folder: use letters, digits, '-', '_' and '.' (no '/', '\\', '..' or control "
            "characters)"
        )
    return name


def path_for(folder: Path, pattern: str, source: str, **names: str) -> Path:
    """``folder / pattern.format(**names)``, each name checked by :func:`safe_name` first (the keyword is the
    kind of name in the error). The only way a path is made from a name: journals, locks, reports, exports,
    calibration files."""
    for kind, name in names.items():
        safe_name(name, kind, source)
    filename = pattern.format(**names)
    path = folder / filename
    if path.parent != folder:  # a pattern of the harness's own with a separator would be a bug here
        raise UnsafeName(f"{source}: {visible(repr(filename))} is not a file name directly in {folder}")
    return path
