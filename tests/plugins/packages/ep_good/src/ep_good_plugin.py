"""An installed fixture plugin found only through its entry point."""

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"


def make(*, params, context):
    return {"offset": params["offset"]}


def run(*, environment, params, context):
    return {"total": environment["offset"] + params["gain"] * context.seed}


@hookimpl
def harness_algorithms():
    return [
        AlgorithmSpec(
            name="ep-linear",
            version="2",
            description="offset + gain * seed",
            task_kinds=("ep-toy",),
            run="ep_good_plugin:run",
            params=(Param("gain", 2.0),),
        ),
        # Clashes with the same name in ep_dup_a_plugin's algorithms: neither may win.
        AlgorithmSpec(
            name="clash", version="1", description="duplicate name", task_kinds=("ep-toy",), run="ep_good_plugin:run"
        ),
    ]


@hookimpl
def harness_environments():
    return [
        EnvironmentSpec(
            name="ep-offset",
            version="1",
            description="an offset",
            task_kind="ep-toy",
            make="ep_good_plugin:make",
            params=(Param("offset", 1.0),),
        )
    ]


@hookimpl
def harness_metrics():
    return [
        MetricSpec(
            name="ep-total",
            version="1",
            description="the total",
            unit="1",
            direction="higher",
            compute=outcome_value("total"),
        )
    ]
