"""harness plugin "d4rl": D4RL-format offline RL datasets, the normalized score and ``harness data d4rl``.

Environments (task kind ``offline-rl``, see :mod:`harness_d4rl.environment` for the object's shape):
``<env>-<quality>`` for env in hopper, halfcheetah, walker2d, ant and quality in random, medium, expert,
medium-replay, medium-expert, plus ``d4rl-dataset`` for any file (``path``) or Minari dataset (``minari_id``).
Nothing heavy is imported here: specs name their callables as strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import EnvironmentSpec, MetricSpec, Param, Resources, hookimpl
from harness_d4rl.corruption import CORRUPTIBLE_FIELDS
from harness_d4rl.references import QUALITIES, TASKS, V5_DIFFERENCE_NOTE

HARNESS_API_VERSION = "1.0"
TASK_KIND = "offline-rl"
ENVIRONMENT_VERSION = "1"


def _params(env: str, quality: str) -> tuple[Param, ...]:
    return (
        Param(
            "env", env, "D4RL locomotion task (fixed by the spec name except for d4rl-dataset)", choices=tuple(TASKS)
        ),
        Param("quality", quality, "dataset quality", choices=QUALITIES),
        Param("path", "", "an HDF5 file in D4RL's schema; empty: search dataset_dir"),
        Param("minari_id", "", "load this local Minari dataset instead of an HDF5 file"),
        Param(
            "dataset_dir",
            "",
            "folder searched for <env>_<quality>-v2.hdf5 and generated files; "
            "empty: $D4RL_DATASET_DIR or ~/.d4rl/datasets",
        ),
        Param("allow_generated", True, "accept a generated file when D4RL's own is absent"),
        Param(
            "generate_if_missing",
            False,
            "generate a small dataset into the cache when none is found (also budget key d4rl_generate_if_missing)",
        ),
        Param("generate_steps", 5000, "rows of that generated dataset (budget key d4rl_generate_steps)"),
        Param(
            "generate_budget",
            3000,
            "SAC environment steps behind that generated dataset (budget key d4rl_generate_budget)",
        ),
        Param("terminate_on_end", False, "keep transitions at timeouts (D4RL qlearning_dataset's flag)"),
        Param("max_episode_steps", 1000, "evaluation episode length"),
        Param("corruption_mode", "none", "RIQL data corruption", choices=("none", "random", "adversarial")),
        Param("corrupt_fields", list(CORRUPTIBLE_FIELDS), "fields to corrupt (all four: RIQL's mixed corruption)"),
        Param("corruption_ratio", 0.3, "fraction of transitions corrupted per field (RIQL default 0.3)"),
        Param("corruption_scale", 1.0, "corruption size in per-dimension stds; rewards: U(-30s, 30s) or -s*r"),
        Param("adversarial_critic_steps", 10000, "gradient steps pretraining the attacked critic"),
        Param("adversarial_attack_steps", 100, "signed-gradient steps per adversarial perturbation (RIQL 100)"),
    )


def _description(env: str | None, quality: str | None) -> str:
    what = f"D4RL {env}-{quality}" if env else "Any D4RL-schema HDF5 file or local Minari dataset"
    return (
        f"{what} offline dataset (qlearning_dataset transitions) with its Gymnasium MuJoCo v5 evaluation "
        f"environment and D4RL normalized score; D4RL's own file if present, else a generated one labelled "
        f"as such. {V5_DIFFERENCE_NOTE}"
    )


@hookimpl
def harness_environments() -> Sequence[EnvironmentSpec]:
    specs = [
        EnvironmentSpec(
            name=f"{env}-{quality}",
            version=ENVIRONMENT_VERSION,
            description=_description(env, quality),
            task_kind=TASK_KIND,
            make="harness_d4rl.environment:make",
            params=_params(env, quality),
            resources=Resources(cpus=1.0, memory_mb=2048),
        )
        for env in TASKS
        for quality in QUALITIES
    ]
    specs.append(
        EnvironmentSpec(
            name="d4rl-dataset",
            version=ENVIRONMENT_VERSION,
            description=_description(None, None),
            task_kind=TASK_KIND,
            make="harness_d4rl.environment:make",
            params=_params("hopper", "medium"),
            resources=Resources(cpus=1.0, memory_mb=2048),
        )
    )
    return specs


@hookimpl
def harness_metrics() -> Sequence[MetricSpec]:
    return [
        MetricSpec(
            name="normalized_score",
            version="1",
            description=(
                "D4RL normalized score: 100 * (return - ref_min) / (ref_max - ref_min), averaged over the final "
                "evaluation episodes (0 = random policy, 100 = D4RL expert). " + V5_DIFFERENCE_NOTE
            ),
            unit="%",
            direction="higher",
            compute="harness_d4rl.metrics:normalized_score",
            task_kinds=(TASK_KIND,),
            threshold=0.05,
            comparable_across_tasks=True,  # normalized per dataset: 0 random, 100 expert
        )
    ]


@hookimpl
def harness_cli_commands() -> Sequence[Any]:
    from harness_d4rl.cli import data

    return [data]


@hookimpl
def harness_suites() -> list[Path]:
    """suites/d4rl.toml and suites/d4rl-corruption.toml, shipped as package data (links to the repository's
    files in a source checkout), so `harness run d4rl` works from any directory."""
    suites = Path(__file__).parent / "suites"
    return [suites / name for name in ("d4rl.toml", "d4rl-corruption.toml") if (suites / name).is_file()]
