"""The hooks of harness-rl: its algorithm and metric specs. Imports nothing heavy (no torch).

Each algorithm's parameters are its config dataclass's fields, read from the algorithm file's source by
:func:`harness_rl.hyperparameters.params_from_config` (the dataclass is the one declaration: its defaults and
comments are the parameters' defaults and descriptions). Callables are ``"module:function"`` strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness import AlgorithmSpec, CellContext, MetricSpec, Param, Resources, hookimpl, outcome_value
from harness_rl.hyperparameters import params_from_config

HARNESS_API_VERSION = "1.0"
OFFLINE = "offline-rl"
MANIPULATION = "manipulation"
THREADS = Param("threads", 0, "torch intra-op threads for this cell (0: leave torch's default; 1 on shared CPUs)")


def _spec(name: str, description: str, module: str, config: str) -> AlgorithmSpec:
    return AlgorithmSpec(
        name=name,
        version="1",
        description=description,
        task_kinds=(OFFLINE, MANIPULATION),
        run=f"harness_rl.{module}:run",
        params=(*params_from_config(f"harness_rl.{module}", config), THREADS),
        # torch on either device: a GPU when the run's --device allows one (context.device), else the CPU.
        resources=Resources(uses_gpu=True),
    )


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        _spec("bc", "Behavior cloning (CORL); offline; the floor for learning from demonstrations.", "bc", "BCConfig"),
        _spec(
            "td3-bc",
            "TD3+BC (Fujimoto & Gu 2021, CORL defaults); offline or offline-to-online.",
            "td3_bc",
            "TD3BCConfig",
        ),
        _spec(
            "iql",
            "Implicit Q-Learning (Kostrikov et al. 2021, CORL defaults); offline or offline-to-online.",
            "iql",
            "IQLConfig",
        ),
        _spec(
            "riql",
            "Robust IQL (Yang et al. 2024): quantile Q ensemble, Huber loss, observation normalization; offline.",
            "riql",
            "RIQLConfig",
        ),
        _spec(
            "arsq",
            "Auto-regressive soft Q-learning (Liu et al. 2025) over coarse-to-fine discretized "
            "actions; offline or offline-to-online (demonstrations mixed into online training).",
            "arsq",
            "ARSQConfig",
        ),
        _spec(
            "sac",
            "Soft Actor-Critic with automatic temperature (CleanRL defaults); online, "
            "demonstrations kick-start the replay buffer. Budget: env_steps.",
            "sac",
            "SACConfig",
        ),
        _spec(
            "wsrl",
            "WSRL (Zhou et al. 2024): offline pretraining, warm-up rollouts by the frozen "
            "pretrained policy, then online SAC without offline data.",
            "wsrl",
            "WSRLConfig",
        ),
    ]


def success_auc(
    *, outcome: Mapping[str, Any], environment: Any = None, context: CellContext | None = None
) -> float | None:
    """Area under the success-rate curve over environment steps, normalized by the step range (0..1).

    Trapezoids over the logged evaluation points, starting from (0, 0) (nothing learned before training).
    None when the outcome has no success curve.
    """
    points = [p for p in outcome.get("curve") or () if "success_rate" in p]
    if not points:
        return None
    key = "env_steps" if any(p.get("env_steps") for p in points) else "step"
    xs = [0.0] + [float(p[key]) for p in points]
    ys = [0.0] + [float(p["success_rate"]) for p in points]
    if xs[-1] <= 0:
        return None
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return area / xs[-1]


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
        MetricSpec(
            "success_rate",
            "1",
            "Share of final evaluation episodes with info['success'].",
            unit="1",
            direction="higher",
            compute=outcome_value("success_rate"),
            comparable_across_tasks=True,  # a share of episodes on every task
        ),
        MetricSpec(
            "success_auc",
            "1",
            "Area under the success-rate curve over environment steps, divided "
            "by the step range (sample efficiency, 0..1).",
            unit="1",
            direction="higher",
            compute="harness_rl.plugin:success_auc",
        ),
        MetricSpec(
            "gradient_steps_per_s",
            "1",
            "Gradient updates per second of update time (evaluation and environment stepping excluded).",
            unit="steps/s",
            direction="higher",
            compute=outcome_value("gradient_steps_per_s"),
            threshold=0.1,
        ),
        MetricSpec(
            "env_steps_per_s",
            "1",
            "Environment steps per second: online training when the algorithm trains online, else evaluation rollouts.",
            unit="steps/s",
            direction="higher",
            compute=outcome_value("env_steps_per_s"),
            threshold=0.1,
        ),
    ]
