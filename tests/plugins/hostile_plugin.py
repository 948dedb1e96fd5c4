"""Algorithms that misbehave the way plugins do (loaded with ``-p hostile_plugin`` beside ``fixture_plugin``).

``exit`` and ``interrupt`` end their cell with ``SystemExit`` or ``KeyboardInterrupt``; ``mess`` changes the
process state a later cell in the same worker would inherit (environment, working directory, numpy's error
mode, torch's default dtype and thread count, a closed ``sys.stdout``); ``interop`` changes what cannot be
changed back (torch's inter-op thread count can be set once per process); ``probe`` reports the state it sees;
``fill`` fills the disk under the results folder; ``emit`` returns values a metric must refuse or survive;
``say`` prints text it is given (escape sequences, rich markup), reports it as progress and fails with it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from harness import AlgorithmSpec, CellContext, MetricSpec, Param, hookimpl

HARNESS_API_VERSION = "1.0"


def run_say(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    text = params["text"]
    print(text)
    sys.stdout.flush()
    context.progress(1, 2, note=text)
    raise ValueError(text)


def run_exit(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    sys.exit(params["code"])


def run_interrupt(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    raise KeyboardInterrupt("raised by the cell, not the user")


def run_mess(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    import numpy as np
    import torch

    os.environ["PROBE_OFFSET"] = "-3"
    os.environ.pop("OMP_NUM_THREADS", None)
    os.chdir(params["elsewhere"])
    np.seterr(all="raise")
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(torch.get_num_threads() + 1)
    sys.stdout.close()
    return {"score": 0.0}


def run_interop(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    import torch

    torch.set_num_interop_threads(torch.get_num_interop_threads() + 1)
    return {"score": 0.0, "pid": os.getpid()}


def run_fill(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """While the file ``armed`` exists, fill the disk holding ``path`` (as another process on a shared disk
    would) and leave it full; the cell itself succeeds."""
    if os.path.exists(params["armed"]):
        with open(params["path"], "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        with open(params["path"], "ab", buffering=0) as handle:  # the last few bytes a page rounding left
            try:
                while True:
                    handle.write(b"\0")
            except OSError:
                pass
    # A result line longer than a page: it cannot fit in what is left of the journal's last page either.
    return {"score": 1.0, "padding": "x" * 8192}


class _BadFloat:
    def __float__(self) -> float:
        raise ArithmeticError("no float for you")

    def __repr__(self) -> str:
        return "<BadFloat>"


def run_emit(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """An outcome whose ``raw`` value the ``raw`` metric hands back unconverted; ``score`` is 1.7e308 (huge)."""
    import numpy as np

    values = {"bool": True, "np_bool": np.bool_(True), "array": np.array([1.0, 2.0]), "bad_float": _BadFloat(),
              "number": np.float32(0.5)}  # fmt: skip
    return {"score": 1.7e308 if params["huge"] else 1.0, "raw": values[params["what"]]}


def compute_raw(*, outcome: dict[str, Any], environment: Any = None, context: Any = None) -> Any:
    return outcome.get("raw")


def run_step(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Make the test's wall clock step (by creating its trigger file) half way through 2 s of work."""
    import time

    time.sleep(1.0)
    open(params["trigger"], "w").close()
    time.sleep(1.0)
    return {"score": 1.0}


def run_probe(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Score 2 in a clean worker; the outcome lists every piece of state it saw."""
    import numpy as np
    import torch

    print("the probe prints")  # fails on a closed sys.stdout
    ratio = float(np.float64(1.0) / np.float64(0.0))  # a warning by default, an error under seterr(all="raise")
    return {
        "score": 2.0 + float(os.environ.get("PROBE_OFFSET", "0")) + (0.0 if ratio == float("inf") else 1.0),
        "cwd": os.getcwd(),
        "errstate": np.geterr(),
        "dtype": str(torch.zeros(1).dtype),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
    }


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    def spec(name: str, run: str, *params: Param) -> AlgorithmSpec:
        return AlgorithmSpec(name=name, version="1", description=f"hostile {name}", task_kinds=("toy",), run=run,
                             params=params)  # fmt: skip

    return [
        spec("exit", "hostile_plugin:run_exit", Param("code", 0)),
        spec("interrupt", "hostile_plugin:run_interrupt"),
        spec("mess", "hostile_plugin:run_mess", Param("elsewhere", "")),
        spec("interop", "hostile_plugin:run_interop"),
        spec("probe", "hostile_plugin:run_probe", Param("tag", "")),
        spec("fill", "hostile_plugin:run_fill", Param("path", ""), Param("armed", "")),
        spec("step", "hostile_plugin:run_step", Param("trigger", "")),
        spec("emit", "hostile_plugin:run_emit", Param("what", "number"), Param("huge", False)),
        AlgorithmSpec(
            name="say",
            version="1",
            description="prints TEXT, reports it as its progress note, then fails with it as the error",
            task_kinds=("toy",),
            run="hostile_plugin:run_say",
            params=(Param("text", "", "what to print and raise"),),
        ),
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec(name="raw", version="1", description="the outcome's raw value, unconverted", unit="1",
                       direction="higher", compute="hostile_plugin:compute_raw")]  # fmt: skip
