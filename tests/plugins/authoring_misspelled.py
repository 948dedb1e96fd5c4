"""Fixture plugin with a misspelled hook name."""

from __future__ import annotations

from harness import hookimpl

HARNESS_API_VERSION = "1.0"


@hookimpl
def harness_algorithm() -> list[object]:  # the hook is harness_algorithms
    return []
