"""Registers an algorithm named 'clash', as the installed fixture package ep_good_plugin does."""

from harness import AlgorithmSpec, hookimpl


@hookimpl
def harness_algorithms():
    return [
        AlgorithmSpec(
            name="clash", version="1", description="duplicate name", task_kinds=("toy",), run="fixture_plugin:run_noop"
        )
    ]
