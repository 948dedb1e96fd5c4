"""Listing stays light: ``harness list`` and ``harness --help`` import neither torch nor CuPy.

docs/plugins.md promises that listing imports nothing heavy; importing torch alone takes seconds, so a plugin
whose hooks or whose availability probes (``requires``) import it makes every ``harness list`` slow. Each check
runs the real command line with every installed first-party plugin in a fresh interpreter and then looks at
``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "cupy", "cupyx", "tensorflow", "jax", "mujoco", "ray", "transformers", "sentence_transformers")

PROBE = """
import json, sys
from harness.cli.main import main
sys.argv = ["harness", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES=" + json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def imported_by(*args: str) -> tuple[set[str], str]:
    """Top-level packages in sys.modules after running ``harness ARGS`` in a fresh interpreter, and its stdout."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output, _, modules = completed.stdout.rpartition("\nMODULES=")
    return set(json.loads(modules)), output


@pytest.mark.parametrize("kind", ["algorithms", "environments", "metrics", "suites"])
def test_listing_imports_neither_torch_nor_cupy(kind):
    modules, output = imported_by("list", kind, "--json")
    entries = json.loads(output)
    assert entries, f"harness list {kind} listed nothing: are the first-party plugins installed?"
    heavy = sorted(modules.intersection(HEAVY))
    assert not heavy, f"harness list {kind} imported {heavy}: availability probes must use importlib.util.find_spec"


def test_listing_still_reports_why_a_spec_cannot_run():
    """Light probes still answer: every GPU softmax algorithm has a reason, or none, without importing CuPy."""
    modules, output = imported_by("list", "algorithms", "--json")
    entries = {e["name"]: e for e in json.loads(output)}
    gpu = [e for name, e in entries.items() if name.startswith("softmax-") and name.endswith("-gpu")]
    if not gpu:
        pytest.skip("harness-softmax is not installed")
    for entry in gpu:
        assert entry["unavailable"] is None or isinstance(entry["unavailable"], str)
        assert not str(entry["unavailable"] or "").startswith("availability check failed"), entry
    assert "cupy" not in modules


def test_help_imports_neither_torch_nor_cupy():
    modules, output = imported_by("--help")
    assert "list" in output
    assert not modules.intersection(HEAVY), sorted(modules.intersection(HEAVY))
