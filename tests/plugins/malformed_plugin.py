"""Returns malformed specs from two hooks; its good hook must still work."""

from harness import AlgorithmSpec, MetricSpec, hookimpl


@hookimpl
def harness_metrics():
    return [
        MetricSpec(
            name="sideways",
            version="1",
            description="bad direction",
            unit="1",
            direction="sideways",
            compute="fixture_plugin:run_noop",
        )
    ]


@hookimpl
def harness_environments():
    return "not a list"


@hookimpl
def harness_algorithms():
    return [
        AlgorithmSpec(
            name="fine-algorithm", version="1", description="ok", task_kinds=("toy",), run="fixture_plugin:run_noop"
        )
    ]
