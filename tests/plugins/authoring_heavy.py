"""Fixture plugin that imports a heavy library when it is merely listed."""

from __future__ import annotations

import gymnasium  # noqa: F401 - the flaw under test: this belongs inside the spec's callable

from harness import MetricSpec, hookimpl

HARNESS_API_VERSION = "1.0"


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="authoring_heavy_metric",
            version="1",
            description="Reads a value",
            unit="1",
            direction="higher",
            compute="harness.specs:outcome_value",
        )
    ]
