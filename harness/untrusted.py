"""Text the harness did not write itself, made harmless where it ends up: a terminal or a spreadsheet.

Labels, parameters, error messages and plugin output come from suite files, plugins and shared tracking
stores (docs/security.md). Two sinks interpret what they are given:

* a terminal runs escape sequences (``ESC ] 0;title BEL`` renames the window, ``ESC ] 52`` writes the
  clipboard, ``ESC [ 2J`` clears the screen): :func:`visible` shows every control character as an escape
  (``\\x1b``) instead, and every printer of untrusted text uses it (rich markup is escaped after it);
* a spreadsheet runs a CSV cell that begins with ``=``, ``+``, ``-``, ``@``, tab or carriage return as a
  formula: :func:`csv_cell` prefixes such a cell with a single quote, as OWASP recommends ("CSV Injection"),
  unless the cell is a plain number, which stays a number.
"""

from __future__ import annotations

import re
from typing import Any


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: Any, keep_newlines: bool = False) -> str:
    """``text`` with every non-printable character (C0 and C1 controls, ESC, DEL, bidi overrides, zero-width
    and line-separator characters: what :meth:`str.isprintable` refuses) written as a visible escape.

    ``keep_newlines`` keeps line feeds and tabs, for multi-line messages and output tails; a carriage return
    is always shown, since it lets a line overwrite what came before it.
    """
    value = str(text)
    if value.isprintable():
        return value  # the common case, without a per-character loop
    kept = "\n\t" if keep_newlines else ""
    return "".join(char if char.isprintable() or char in kept else _escape(char) for char in value)


def markup(text: Any, keep_newlines: bool = False) -> str:
    """:func:`visible`, then escaped for rich markup: for untrusted text inside a rich-formatted string, so a
    label such as ``[red]x[/]`` is printed as written, never styled."""
    from rich.markup import escape

    return escape(visible(text, keep_newlines=keep_newlines))


#: What a spreadsheet takes as the start of a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'``; anything else unchanged.

    A plain number written as text (``-0.5``, ``+1e-3``: parameters are strings in MLflow) is not a formula
    and is left as it is, so it still reads as a number; numeric columns never reach here as text at all.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
