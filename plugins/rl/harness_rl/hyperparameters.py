"""An algorithm's config dataclass is the one declaration of its hyperparameters; its spec's params come from it.

Every algorithm file declares its config as CORL does, one field per line with the published default and a
comment::

    @dataclass
    class IQLConfig:
        beta: float = 3.0  # inverse temperature of advantage-weighted regression

:func:`params_from_config` turns those fields into harness :class:`~harness.Param`\\ s, the comment becoming the
description and a ``Literal[...]`` annotation (or one of the aliases below) the choices. It reads the
algorithm's *source* with :mod:`ast` instead of importing it: the algorithm files import torch, and
``harness list`` must not (a test checks the parsed params against the imported dataclass).

This module imports nothing heavy.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from harness import Param

# "off" runs eager PyTorch; the others are torch.compile modes of the update's loss computation.
# "reduce-overhead" replays it as a CUDA graph on a GPU, the fix for small networks whose step time is kernel
# launches; on a CPU torch.compile generates C++ (it needs a C++ compiler and takes about a minute per cell).
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]
# offline: train on the dataset, then evaluate (budget gradient_steps); offline-to-online: the dataset is
# mixed into online training (budget env_steps).
Protocol = Literal["offline", "offline-to-online"]
COMPILE_MODES: tuple[str, ...] = typing.get_args(CompileMode)
PROTOCOLS: tuple[str, ...] = typing.get_args(Protocol)
_ALIASES = {"CompileMode": COMPILE_MODES, "Protocol": PROTOCOLS}


def _choices(annotation: ast.expr | None) -> tuple[Any, ...] | None:
    if isinstance(annotation, ast.Name) and annotation.id in _ALIASES:
        return _ALIASES[annotation.id]
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "Literal":
        inner = annotation.slice
        values = inner.elts if isinstance(inner, ast.Tuple) else [inner]
        return tuple(ast.literal_eval(v) for v in values)
    return None


def _comment(lines: list[str], node: ast.AnnAssign) -> str:
    """The ``# comment`` after the field, with the comment-only lines that continue it."""
    tail = lines[node.end_lineno - 1][node.end_col_offset :].strip()
    parts = [tail[1:].strip()] if tail.startswith("#") else []
    for line in lines[node.end_lineno :]:
        stripped = line.strip()
        if not stripped.startswith("#") or not parts:
            break
        parts.append(stripped[1:].strip())
    return " ".join(parts)


@functools.cache
def params_from_config(module: str, class_name: str) -> tuple[Param, ...]:
    """The fields of the dataclass ``class_name`` in ``module`` as Params, read from the source (no import).

    Raises ValueError naming the file and line of a field without a literal default or without a comment.
    """
    spec = importlib.util.find_spec(module)  # imports the parent package (light), not the module itself
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of {module!r}")
    path = Path(spec.origin)
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            break
    else:
        raise ValueError(f"{path}: no class {class_name!r}")
    params = []
    for field in node.body:
        if not isinstance(field, ast.AnnAssign) or not isinstance(field.target, ast.Name):
            continue
        where = f"{path}:{field.lineno}: {class_name}.{field.target.id}"
        if field.value is None:
            raise ValueError(f"{where} has no default; every hyperparameter declares its published default")
        try:
            default = ast.literal_eval(field.value)
        except ValueError:
            raise ValueError(f"{where}: the default must be a literal (a number, string, bool or None)") from None
        description = _comment(lines, field)
        if not description:
            raise ValueError(f"{where} has no comment; the comment is the parameter's description")
        params.append(Param(field.target.id, default, description, choices=_choices(field.annotation)))
    return tuple(params)


def config_from_params(config_type: type, params: Mapping[str, Any]) -> Any:
    """Build an algorithm's config dataclass from the cell's params (names that are not fields are ignored)."""
    names = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: v for k, v in params.items() if k in names})
