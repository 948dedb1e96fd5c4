"""harness-example-bandits: a third-party harness plugin, written only against the public ``harness`` API.

It provides a Bernoulli multi-armed bandit (environment), epsilon-greedy and UCB1 (algorithms), the regret
and the fraction of pulls on the best arm (metrics), and a suite that compares them. The hook
implementations only build specs: the code they name (``harness_example_bandits.bandits``) is imported when a
cell runs, so ``harness plugins`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, hookimpl

#: The hook API this plugin was written against; a harness with another major version refuses it.
HARNESS_API_VERSION = "1.0"

#: The contract between the environment and the algorithms: ``make`` returns an object with ``n_arms`` and
#: ``pull(arm) -> float`` (a reward of 0 or 1), plus ``means`` for the metrics (never read by algorithms).
TASK_KIND = "multi-armed-bandit"


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [
        EnvironmentSpec(
            name="bandit-bernoulli",
            version="1.0.0",
            description="Bernoulli bandit: arm means drawn from the seed, one best arm ahead by a fixed gap",
            task_kind=TASK_KIND,
            make="harness_example_bandits.bandits:make_bernoulli_bandit",
            params=(
                Param("arms", 10, "number of arms"),
                Param("gap", 0.1, "how much the best arm's mean exceeds the second best"),
            ),
        )
    ]


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    return [
        AlgorithmSpec(
            name="bandit-epsilon-greedy",
            version="1.0.0",
            description="Epsilon-greedy: the best arm so far, or a random arm with probability epsilon",
            task_kinds=(TASK_KIND,),
            run="harness_example_bandits.bandits:run_epsilon_greedy",
            params=(Param("epsilon", 0.1, "probability of pulling a random arm"),),
        ),
        AlgorithmSpec(
            name="bandit-ucb1",
            version="1.0.0",
            description="UCB1 (Auer et al., 2002): the arm with the highest upper confidence bound",
            task_kinds=(TASK_KIND,),
            run="harness_example_bandits.bandits:run_ucb1",
            params=(Param("exploration", 2.0, "c in mean + sqrt(c * ln t / n); 2 is the paper's value"),),
        ),
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(
            name="bandit_regret",
            version="1.0.0",
            description="Expected regret: steps x best mean minus the sum of the pulled arms' means",
            unit="reward",
            direction="lower",
            compute="harness_example_bandits.bandits:regret",
            task_kinds=(TASK_KIND,),
        ),
        MetricSpec(
            name="bandit_best_arm_fraction",
            version="1.0.0",
            description="Fraction of all pulls spent on the best arm",
            unit="1",
            direction="higher",
            compute="harness_example_bandits.bandits:best_arm_fraction",
            task_kinds=(TASK_KIND,),
        ),
    ]


@hookimpl
def harness_suites() -> list[Path]:
    return [Path(__file__).parent / "suites" / "example-bandits.toml"]
