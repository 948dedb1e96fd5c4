"""The architecture's rules, checked on every import statement (function-level imports included):

* the core never imports a plugin, and imports no domain library (torch, gymnasium, cupy, ...) at import time;
* the record (``harness/record.py``) is the top of the core: it imports no other harness module;
* the plugin API (``harness``'s face, ``hookspecs``, ``context``, ``specs``, ``builtin``) does not stand on the
  MLflow machinery: it imports nothing from ``harness.tracking``;
* tracking, analysis and the record know no report and no command line;
* a plugin's package imports only the public API (``harness`` itself and ``harness.testing``).

Each rule fails with the file, line and import that broke it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "harness"
PLUGIN_PACKAGES = sorted(p for p in (ROOT / "plugins").glob("*/harness_*") if p.is_dir())
DOMAIN_LIBRARIES = ("torch", "gymnasium", "mujoco", "cupy", "h5py", "metaworld", "minari", "sentence_transformers")
PLUGIN_API = ("harness", "harness.hookspecs", "harness.context", "harness.specs", "harness.builtin", "harness.errors")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every import in ``path``; ``from a import b`` gives ``a.b``
    too, so importing a submodule by ``from package import submodule`` is seen."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in top_level
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, id(node) in top_level
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}", id(node) in top_level


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def _violations(files: list[Path], broken: object) -> list[str]:
    found = []
    for path in files:
        module = _module_name(path)
        for line, name, top_level in imports(path):
            reason = broken(module, name, top_level)  # type: ignore[operator]
            if reason:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {name} ({reason})")
    return found


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_the_core_imports_no_plugin_and_no_domain_library_at_import_time() -> None:
    def broken(module: str, name: str, top_level: bool) -> str:
        if name.startswith("harness_"):
            return "the core never imports a plugin: plugins meet the core through hooks"
        if top_level and any(_within(name, library) for library in DOMAIN_LIBRARIES):
            return "a domain library at import time: import it where a plugin chose it"
        return ""

    assert not _violations(CORE_FILES, broken)


def test_the_record_is_the_top_of_the_core() -> None:
    def broken(module: str, name: str, top_level: bool) -> str:
        return "the record imports no other harness module" if _within(name, "harness") else ""

    assert not _violations([CORE / "record.py"], broken)


def test_the_plugin_api_does_not_stand_on_the_tracking_machinery() -> None:
    files = [path for path in CORE_FILES if _module_name(path) in PLUGIN_API]
    assert len(files) == len(PLUGIN_API)

    def broken(module: str, name: str, top_level: bool) -> str:
        if _within(name, "harness.tracking") or _within(name, "mlflow"):
            return "the plugin contract must not depend on how results are stored"
        return ""

    assert not _violations(files, broken)


def test_tracking_analysis_and_the_record_know_no_report_and_no_command_line() -> None:
    data_layers = ("harness.record", "harness.tracking", "harness.analysis")
    files = [path for path in CORE_FILES if any(_within(_module_name(path), layer) for layer in data_layers)]

    def broken(module: str, name: str, top_level: bool) -> str:
        if _within(name, "harness.report") or _within(name, "harness.cli") or _within(name, "click"):
            return "data and statistics must not depend on how they are shown"
        return ""

    assert not _violations(files, broken)


def test_plugins_import_only_the_public_api() -> None:
    assert PLUGIN_PACKAGES, "no first-party plugin packages found under plugins/"
    files = [path for package in PLUGIN_PACKAGES for path in sorted(package.rglob("*.py"))]

    def broken(module: str, name: str, top_level: bool) -> str:
        if not _within(name, "harness"):
            return ""
        public = name == "harness" or name.split(".")[1] not in _core_submodules() or _within(name, "harness.testing")
        return "" if public else "a plugin uses only what `harness` exports (harness/__init__.py) and harness.testing"

    assert not _violations(files, broken)


def _core_submodules() -> set[str]:
    return {path.stem if path.stem != "__init__" else path.parent.name for path in CORE.iterdir()} - {"harness"}


def test_the_rules_see_a_broken_import(tmp_path: Path) -> None:
    # The checks must find what they look for, or their silence above proves nothing.
    planted = tmp_path / "planted.py"
    planted.write_text("import torch\nfrom harness.report import build\n\ndef f():\n    from harness_rl import sac\n")
    found = list(imports(planted))
    assert (1, "torch", True) in found and (2, "harness.report.build", True) in found
    assert (5, "harness_rl.sac", False) in found
