"""A test plugin whose cell prints and raises text it is given: escape sequences, rich markup (loaded with -p)."""

from __future__ import annotations

import sys
from typing import Any

from harness import AlgorithmSpec, CellContext, Param, hookimpl

HARNESS_API_VERSION = "1.0"


def run_say(*, environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    text = params["text"]
    print(text)
    sys.stdout.flush()
    context.progress(1, 2, note=text)
    raise ValueError(text)


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec(
            name="say",
            version="1",
            description="prints TEXT, reports it as its progress note, then fails with it as the error",
            task_kinds=("toy",),
            run="hostile_plugin:run_say",
            params=(Param("text", "", "what to print and raise"),),
        )
    ]
