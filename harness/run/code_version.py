"""Code versions: a hash of the source behind a spec, so a result of old code is never taken for a result of new.

A spec's hand-set ``version`` says when its author meant results to change; the code version says when they may
have. It hashes the source of the module that defines each of the spec's callables (``run``, ``make``,
``compute``) and of every module of the same top-level package that module imports, directly or through others
(found by reading ``import`` statements, never by importing: expanding a suite must not import torch). asv and
benchopt hash the benchmark's source the same way; following imports within the package also catches a change
to a shared training loop or network that the algorithm's own file does not show.

The hash ignores nothing but the bytes of files: a changed comment reruns a cell. That is the safe side of the
trade: a rerun costs time, a stale result costs trust.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


@functools.cache
def _package_dirs(top: str) -> tuple[Path, ...]:
    """Folders of a top-level package, found without executing it (``find_spec`` of a top-level name does not
    import it; of a dotted name it imports the parents, which may import torch)."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return ()
    if spec is None:
        return ()
    if spec.submodule_search_locations:
        return tuple(Path(p) for p in spec.submodule_search_locations)
    return (Path(spec.origin).parent,) if spec.origin and spec.origin.endswith(".py") else ()


@functools.cache
def _module_file(module: str) -> Path | None:
    loaded = sys.modules.get(module)
    loaded_file = getattr(loaded, "__file__", None)
    if loaded_file:
        return Path(loaded_file)
    top, *rest = module.split(".")
    if not rest:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None
    for folder in _package_dirs(top):
        base = folder.joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved against ``module``)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    is_package = path.name == "__init__.py"
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - node.level + 1]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            if not base:
                continue
            found.add(base)
            # ``from package import submodule`` imports a module, not only a name.
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


@functools.cache
def _package_closure(module: str) -> tuple[tuple[str, Path], ...]:
    """``module`` and every module of its top-level package that it imports, transitively, with their files."""
    top = module.split(".")[0]
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] != top:
            continue
        path = _module_file(name)
        if path is None or path.suffix != ".py":
            continue
        seen[name] = path
        todo.extend(sorted(_imported_modules(path, name)))
    return tuple(sorted(seen.items()))


@functools.cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(path: Path) -> str:
    stat = path.stat()
    return _file_digest(path, stat.st_size, stat.st_mtime_ns)


def _callable_module(target: Callable[..., Any] | str) -> str | None:
    if isinstance(target, str):
        return target.partition(":")[0] or None
    module = getattr(target, "__module__", None)
    if module and module != "__main__":
        return module
    source = inspect.getsourcefile(target) if callable(target) else None
    return f"__file__:{source}" if source else None


def code_files(targets: Iterable[Callable[..., Any] | str]) -> dict[str, str]:
    """Module name -> sha256 of its source, for the modules behind ``targets`` (see the module docstring)."""
    files: dict[str, str] = {}
    for target in targets:
        module = _callable_module(target)
        if module is None:
            continue
        if module.startswith("__file__:"):
            path = Path(module.removeprefix("__file__:"))
            if path.is_file():
                files[str(path)] = _digest(path)
            continue
        for name, path in _package_closure(module):
            files[name] = _digest(path)
    return files


def code_version(targets: Iterable[Callable[..., Any] | str]) -> str:
    """A short hash of the source behind ``targets``; ``""`` when no source can be found (built-ins)."""
    files = code_files(targets)
    if not files:
        return ""
    payload = "\n".join(f"{name} {digest}" for name, digest in sorted(files.items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


_SPEC_VERSIONS: dict[int, tuple[Any, str]] = {}


def spec_code_version(spec: Any) -> str:
    """The code version of an algorithm, environment or metric spec (its ``run``, ``make`` or ``compute``).

    Computed once per spec object and process: a suite of 10^5 cells has a handful of specs.
    """
    cached = _SPEC_VERSIONS.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    targets = [getattr(spec, name) for name in ("run", "make", "compute") if getattr(spec, name, None)]
    version = code_version(targets)
    _SPEC_VERSIONS[id(spec)] = (spec, version)
    return version
