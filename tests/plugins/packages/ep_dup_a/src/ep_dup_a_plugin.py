from harness import AlgorithmSpec, hookimpl


@hookimpl
def harness_algorithms():
    return [
        AlgorithmSpec(
            name="clash", version="1", description="duplicate name", task_kinds=("ep-toy",), run="ep_good_plugin:run"
        )
    ]
