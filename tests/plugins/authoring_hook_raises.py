"""Fixture plugin whose registration hook raises; its metrics hook works."""

from __future__ import annotations

from harness import AlgorithmSpec, MetricSpec, hookimpl

HARNESS_API_VERSION = "1.0"


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    raise KeyError("authoring fixture: no such registry entry")


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [MetricSpec("authoring_survivor", "1", "Still registered", unit="1", direction="higher", compute="m:f")]
