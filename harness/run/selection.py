"""``--only``: choosing a subset of a profile's cells by algorithm, environment and seed (globs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.errors import BadInput
from harness.record import Cell

SELECTION_FIELDS = ("algorithm", "environment", "seed")


def parse_selection(expressions: Sequence[str]) -> list[dict[str, str]]:
    """``--only`` expressions as lists of (field, glob) conditions.

    One expression is comma-separated ``FIELD=GLOB`` conditions that must all hold (``algorithm=iql,
    environment=hopper-*``); repeating ``--only`` selects cells matching any expression. Fields: ``algorithm``
    and ``environment`` (the spec's name or the suite's label), ``seed``, or ``NAME.PARAM`` for a parameter.
    """
    selection = []
    for expression in expressions:
        conditions: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in expression.split(","))):
            field_name, sep, pattern = part.partition("=")
            field_name = field_name.strip()
            if not sep or not field_name:
                raise BadInput(
                    f"--only {expression!r}: expected FIELD=GLOB[,FIELD=GLOB...], for example "
                    "'algorithm=iql,environment=hopper-*' (fields: algorithm, environment, seed, NAME.PARAM)"
                )
            if field_name not in SELECTION_FIELDS and "." not in field_name:
                raise BadInput(
                    f"--only {expression!r}: unknown field {field_name!r}; use algorithm, environment, seed or "
                    "NAME.PARAM"
                )
            conditions[field_name] = pattern.strip()
        if conditions:
            selection.append(conditions)
    return selection


def cell_matches(cell: Cell, conditions: Mapping[str, str]) -> bool:
    from fnmatch import fnmatchcase

    for field_name, pattern in conditions.items():
        if field_name == "algorithm":
            values = [cell.algorithm.name, cell.algorithm_label]
        elif field_name == "environment":
            values = [cell.environment.name, cell.environment_label]
        elif field_name == "seed":
            values = [str(cell.seed)]
        else:
            component, _, param = field_name.rpartition(".")
            values = []
            for ref, label in ((cell.algorithm, cell.algorithm_label), (cell.environment, cell.environment_label)):
                if component in (ref.name, label) and param in ref.params:
                    values.append(str(ref.params[param]))
        if not any(fnmatchcase(value, pattern) for value in values):
            return False
    return True


def select_cells(cells: list[Cell], expressions: Sequence[str], where: str) -> list[Cell]:
    """The cells matching any ``--only`` expression; :class:`BadInput` when none does."""
    selection = parse_selection(expressions)
    if not selection:
        return cells
    chosen = [cell for cell in cells if any(cell_matches(cell, conditions) for conditions in selection)]
    if not chosen:
        names = sorted({cell.algorithm_label for cell in cells}) + sorted({cell.environment_label for cell in cells})
        raise BadInput(
            f"{where}: --only {' | '.join(expressions)} selects none of its {len(cells)} cells "
            f"(labels: {', '.join(names[:20])})"
        )
    return chosen
