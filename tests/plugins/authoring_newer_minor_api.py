"""Fixture plugin written for a hook API this harness does not provide."""

from __future__ import annotations

from harness import MetricSpec, hookimpl

HARNESS_API_VERSION = "1.9"


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec("authoring_newer_minor", "1", "From the future", unit="1", direction="higher", compute="m:f")]
