"""Algorithms for the result-record tests (loaded with ``-p record_plugin`` beside ``fixture_plugin``)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from harness import AlgorithmSpec, CellContext, Param, hookimpl

HARNESS_API_VERSION = "1.0"


def run_echo(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Score the length of a string parameter: sweeping it over paths makes labels that hold '/'."""
    return {"score": float(len(params["text"]))}


def run_flaky(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Fail on the first attempt (no marker file yet), succeed on every later one."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("failed once\n")
        raise RuntimeError("first attempt fails")
    return {"score": 1.0}


def run_checkpointed(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """A long cell in miniature: train ``steps`` steps, checkpointing each, resuming from a checkpoint it finds.

    ``resumed_steps`` says how many steps came from a checkpoint; ``sleep_after`` seconds of sleep after step
    ``stop_at`` let a test interrupt an attempt (timeout) half way.
    """
    path = context.cell_dir() / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {"step": 0, "started": time.time()}
    resumed = state["step"]
    while state["step"] < params["steps"]:
        state["step"] += 1
        path.write_text(json.dumps(state))
        if state["step"] == params["stop_at"]:
            time.sleep(params["sleep_after"])
    return {"score": float(state["step"]), "resumed_steps": resumed, "nonce": random.random()}


def run_nan(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    return {"score": float("nan")}


def run_out_of_memory(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    raise MemoryError()


def run_noisy(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Writes to stdout the three ways plugins do: print, a native write to fd 1, and a warning."""
    import os
    import sys
    import warnings

    print("hello from print")
    sys.stdout.flush()
    os.write(1, b"native write to fd 1\n")
    warnings.warn(f"a library warning ({context.cell['key']})", stacklevel=1)  # new text: shown each time
    if params["fail"]:
        raise RuntimeError("noisy cell fails")
    return {"score": 1.0}


def run_progressing(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """A long loop in miniature that reports every step, as the first-party training loops do."""
    for step in range(params["steps"]):
        context.progress(step, params["steps"], "training")
        time.sleep(params["step_s"])
    context.progress(params["steps"], params["steps"], "evaluating")
    return {"score": float(params["steps"])}


def run_shared_cache(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Builds a cache every later cell would reuse (``shared_s`` seconds), then works ``own_s`` seconds."""
    with context.shared_setup("building the shared cache"):
        time.sleep(params["shared_s"])
    time.sleep(params["own_s"])
    return {"score": 1.0}


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    def spec(name: str, run: str, *params: Param) -> AlgorithmSpec:
        return AlgorithmSpec(name=name, version="1", description=f"record {name}", task_kinds=("toy",), run=run,
                             params=params)  # fmt: skip

    return [
        spec("echo", "record_plugin:run_echo", Param("text", "")),
        spec("flaky", "record_plugin:run_flaky", Param("marker", "")),
        spec(
            "checkpointed",
            "record_plugin:run_checkpointed",
            Param("steps", 4),
            Param("stop_at", -1),
            Param("sleep_after", 0.0),
        ),
        spec("nan", "record_plugin:run_nan"),
        spec("out-of-memory", "record_plugin:run_out_of_memory"),
        spec("noisy", "record_plugin:run_noisy", Param("fail", False)),
        spec("shared-cache", "record_plugin:run_shared_cache", Param("shared_s", 1.0), Param("own_s", 0.1)),
        spec("progressing", "record_plugin:run_progressing", Param("steps", 10), Param("step_s", 0.1)),
    ]
