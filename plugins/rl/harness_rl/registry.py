"""The specs this plugin registers. Callables are ``"module:function"`` strings: listing imports no torch."""

from __future__ import annotations

from harness import AlgorithmSpec, MetricSpec, Param, hookimpl, outcome_value

OFFLINE = "offline-rl"
MANIPULATION = "manipulation"


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec(
            name="sac",
            version="1",
            description="Soft Actor-Critic with automatic temperature (CleanRL defaults); demonstrations "
            "kick-start the replay buffer. Budget: env_steps, eval_every, eval_episodes.",
            task_kinds=(OFFLINE, MANIPULATION),
            run="harness_rl.sac:run",
            params=(
                Param(
                    "use_demonstrations", True, "put the environment's demonstrations/dataset in the buffer"
                ),
                Param("learning_starts", 5000, "buffered transitions before updates (CleanRL: 5000)"),
                Param("batch_size", 256, "transitions per gradient step"),
                Param("hidden_dim", 256, "hidden width of actor and critics"),
            ),
        ),
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            "return_mean",
            "1",
            "Mean undiscounted return over the final evaluation episodes.",
            unit="return",
            direction="higher",
            compute=outcome_value("return_mean"),
        ),
    ]
