"""The specs this plugin registers. Callables are ``"module:function"`` strings: listing imports no torch.

The parameter defaults repeat each algorithm's config dataclass (a test keeps them equal), so that
``harness list`` can show them without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness import AlgorithmSpec, MetricSpec, Param, Resources, hookimpl, outcome_value

OFFLINE = "offline-rl"
MANIPULATION = "manipulation"
PROTOCOL = Param(
    "protocol",
    "offline",
    "offline: train on the dataset, then evaluate (budget gradient_steps); offline-to-online: the dataset is "
    "mixed into online training (budget env_steps)",
    choices=("offline", "offline-to-online"),
)
# "off" runs eager PyTorch; the others are torch.compile modes of the update's loss computation.
# "reduce-overhead" replays it as a CUDA graph on a GPU, the fix for small networks whose step time is kernel
# launches; on a CPU torch.compile generates C++ (it needs a C++ compiler and takes about a minute per cell).
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
COMPILE = Param(
    "compile",
    "off",
    "torch.compile the update: off (eager), default, reduce-overhead (CUDA graphs on a GPU) or max-autotune",
    choices=COMPILE_MODES,
)

BC_PARAMS = (
    Param("batch_size", 256, "transitions per gradient step"),
    Param("learning_rate", 3e-4, "Adam learning rate"),
    Param("hidden_dim", 256, "hidden width"),
    Param("frac", 1.0, "fraction of best trajectories cloned (0.1 = CORL's 10% BC)"),
    Param("normalize", True, "standardize observations"),
)
TD3_BC_PARAMS = (
    PROTOCOL,
    Param("batch_size", 256, "transitions per gradient step"),
    Param("discount", 0.99, "discount"),
    Param("tau", 0.005, "target Polyak factor"),
    Param("actor_lr", 3e-4, "actor learning rate"),
    Param("critic_lr", 3e-4, "critic learning rate"),
    Param("hidden_dim", 256, "hidden width"),
    Param("policy_noise", 0.2, "target smoothing noise std"),
    Param("noise_clip", 0.5, "target smoothing noise clip"),
    Param("policy_freq", 2, "critic updates per actor update"),
    Param("alpha", 2.5, "Q-term weight against BC"),
    Param("normalize", True, "standardize observations"),
    Param("expl_noise", 0.1, "exploration noise std (offline-to-online)"),
    COMPILE,
)
IQL_PARAMS = (
    PROTOCOL,
    Param("batch_size", 256, "transitions per gradient step"),
    Param("discount", 0.99, "discount"),
    Param("tau", 0.005, "target Polyak factor"),
    Param("beta", 3.0, "AWR inverse temperature"),
    Param("iql_tau", 0.7, "value expectile"),
    Param("vf_lr", 3e-4, "value learning rate"),
    Param("qf_lr", 3e-4, "Q learning rate"),
    Param("actor_lr", 3e-4, "actor learning rate (cosine-annealed)"),
    Param("hidden_dim", 256, "hidden width"),
    Param("normalize", True, "standardize observations"),
    Param("normalize_reward", True, "scale rewards by 1000 / return range"),
    COMPILE,
)
RIQL_PARAMS = (
    Param("batch_size", 256, "transitions per gradient step"),
    Param("discount", 0.99, "discount"),
    Param("tau", 0.005, "target Polyak factor"),
    Param("beta", 3.0, "AWR inverse temperature"),
    Param("iql_tau", 0.7, "value expectile"),
    Param("num_critics", 5, "Q-ensemble size K"),
    Param("quantile", 0.25, "quantile of the K target Q-values"),
    Param("huber_delta", 1.0, "Huber delta of the Q loss"),
    Param("vf_lr", 3e-4, "value learning rate"),
    Param("qf_lr", 3e-4, "Q learning rate"),
    Param("actor_lr", 3e-4, "actor learning rate (cosine-annealed)"),
    Param("hidden_dim", 256, "hidden width"),
    Param("normalize_reward", True, "scale rewards by 1000 / return range"),
)
ARSQ_PARAMS = (
    PROTOCOL,
    Param("levels", 3, "coarse-to-fine levels per action dimension"),
    Param("bins", 5, "bins per level"),
    Param("alpha", 0.01, "soft Q temperature"),
    Param("batch_size", 256, "transitions per gradient step"),
    Param("discount", 0.99, "discount"),
    Param("tau", 0.005, "target Polyak factor"),
    Param("learning_rate", 3e-4, "Adam learning rate"),
    Param("hidden_dim", 256, "hidden width"),
    Param("normalize", True, "standardize observations"),
)
SAC_PARAMS = (
    Param("use_demonstrations", True, "put the environment's demonstrations/dataset in the replay buffer"),
    Param("buffer_size", 1_000_000, "online replay capacity"),
    Param("gamma", 0.99, "discount"),
    Param("tau", 0.005, "target Polyak factor"),
    Param("batch_size", 256, "transitions per gradient step"),
    Param("learning_starts", 5000, "buffered transitions (demos count) before updates"),
    Param("policy_lr", 3e-4, "actor learning rate"),
    Param("q_lr", 1e-3, "critic and temperature learning rate"),
    Param("policy_frequency", 2, "steps between (batched) actor updates"),
    Param("target_network_frequency", 1, "steps between target updates"),
    Param("alpha", 0.2, "entropy temperature (initial when autotuned)"),
    Param("demo_ratio", 0.0, "share of each batch from the demonstrations (0: uniform over all data)"),
    Param("autotune", True, "learn the temperature"),
    Param("hidden_dim", 256, "hidden width"),
)
WSRL_PARAMS = (
    Param("pretrain_steps", 0, "offline pretraining gradient steps (0: the budget's gradient_steps)"),
    Param("warmup_fraction", 0.05, "share of env_steps collected by the frozen pretrained policy"),
    Param("max_warmup_steps", 5000, "cap on warm-up steps (the paper's 5,000)"),
    Param("bc_weight", 2.5, "alpha of the TD3+BC-style actor regularizer during offline pretraining"),
    *(p for p in SAC_PARAMS if p.name not in ("use_demonstrations", "learning_starts")),
)


THREADS = Param("threads", 0, "torch intra-op threads for this cell (0: leave torch's default; 1 on shared CPUs)")


def _spec(name: str, description: str, module: str, kinds: tuple[str, ...], params) -> AlgorithmSpec:
    return AlgorithmSpec(
        name=name,
        version="1",
        description=description,
        task_kinds=kinds,
        run=f"harness_rl.{module}:run",
        params=(*params, THREADS),
        # torch on either device: a GPU when the run's --device allows one (context.device), else the CPU.
        resources=Resources(uses_gpu=True),
    )


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    both = (OFFLINE, MANIPULATION)
    return [
        _spec(
            "bc", "Behavior cloning (CORL); offline; the floor for learning from demonstrations.", "bc", both, BC_PARAMS
        ),
        _spec(
            "td3-bc",
            "TD3+BC (Fujimoto & Gu 2021, CORL defaults); offline or offline-to-online.",
            "td3_bc",
            both,
            TD3_BC_PARAMS,
        ),
        _spec(
            "iql",
            "Implicit Q-Learning (Kostrikov et al. 2021, CORL defaults); offline or offline-to-online.",
            "iql",
            both,
            IQL_PARAMS,
        ),
        _spec(
            "riql",
            "Robust IQL (Yang et al. 2024): quantile Q ensemble, Huber loss, observation normalization; offline.",
            "riql",
            both,
            RIQL_PARAMS,
        ),
        _spec(
            "arsq",
            "Auto-regressive soft Q-learning (Liu et al. 2025) over coarse-to-fine discretized "
            "actions; offline or offline-to-online (demonstrations mixed into online training).",
            "arsq",
            both,
            ARSQ_PARAMS,
        ),
        _spec(
            "sac",
            "Soft Actor-Critic with automatic temperature (CleanRL defaults); online, "
            "demonstrations kick-start the replay buffer. Budget: env_steps.",
            "sac",
            both,
            SAC_PARAMS,
        ),
        _spec(
            "wsrl",
            "WSRL (Zhou et al. 2024): offline pretraining, warm-up rollouts by the frozen "
            "pretrained policy, then online SAC without offline data.",
            "wsrl",
            both,
            WSRL_PARAMS,
        ),
    ]


def success_auc(*, outcome: Mapping[str, Any], environment: Any = None, context: Any = None) -> float | None:
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
        ),
        MetricSpec(
            "success_auc",
            "1",
            "Area under the success-rate curve over environment steps, divided "
            "by the step range (sample efficiency, 0..1).",
            unit="1",
            direction="higher",
            compute="harness_rl.registry:success_auc",
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
