"""Step ``setup`` of the GPU check: make harness and the GPU-relevant plugins importable, offline.

Nothing is done where they already import (a ``make install`` venv, a second run). Otherwise, on the lent GPU
machine (its own Python with torch and CuPy, no package registry): the wheels carried in ``.whl/``
(``benchmarks/gpu/wheels.sh`` downloads them) and then the project itself, editable, both with
``pip --no-index --no-deps`` into this interpreter's environment, so its torch and CuPy stay as they are.
``make install`` is not used there: it pins the CPU build of torch and needs a registry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Modules the later steps import: the project, the CLI's dependencies, the RL test task's simulator.
REQUIRED = (
    "harness",
    "harness.cli.main",
    "harness_softmax",
    "harness_quant",
    "harness_rl",
    "pydantic",
    "pebble",
    "tenacity",
    "gymnasium",
    "mujoco",
    "pytest",
)
PLUGINS = os.environ.get("HARNESS_GPU_CHECK_PLUGINS", "plugins/core-metrics,plugins/softmax,plugins/quant,plugins/rl")


def missing_modules() -> dict[str, str]:
    """{module: error} of the REQUIRED modules that do not import in a fresh interpreter."""
    missing = {}
    for module in REQUIRED:
        completed = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        if completed.returncode:
            missing[module] = (completed.stderr.strip().splitlines() or ["?"])[-1]
    return missing


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", *args]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


def main() -> int:
    missing = missing_modules()
    if not missing:
        print(f"setup: everything imports with {sys.executable}; nothing to install")
        return 0
    print(f"setup: missing before: {missing}", flush=True)
    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if wheels:
        pip("--quiet", *map(str, wheels))
    else:
        print("setup: no .whl/ folder (run benchmarks/gpu/wheels.sh here and carry .whl): using what is installed")
    editable = [arg for path in [".", *PLUGINS.split(",")] for arg in ("-e", path)]
    pip("--quiet", "--no-build-isolation", *editable)
    missing = missing_modules()
    if missing:
        print(f"setup: still missing: {missing}", file=sys.stderr)
        return 1
    print("setup: everything imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
