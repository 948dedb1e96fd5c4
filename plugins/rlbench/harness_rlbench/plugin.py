"""The hooks of harness-rlbench: manipulation from demonstrations on RLBench and, runnable anywhere, Meta-World v3.

Registers environments of task kind ``manipulation`` (the contract is documented in
:mod:`harness_rlbench.manipulation`):

* ``metaworld-<task>`` for eight Meta-World v3 tasks with scripted experts (runs anywhere MuJoCo runs);
* ``rlbench-<task>`` for RLBench tasks reported by ARSQ and CQN (needs CoppeliaSim, PyRep and RLBench; listed
  as unavailable with what to install when they are absent, so suites record a skip).

Listing imports neither gymnasium, metaworld nor rlbench: every callable is a ``"module:function"`` string.
"""

from __future__ import annotations

from pathlib import Path

from harness import EnvironmentSpec, Param, hookimpl
from harness_rlbench.manipulation import REWARD_TYPES, TASK_KIND

HARNESS_API_VERSION = "1.0"

# Kept in step with metaworld_tasks.TASKS and rlbench_tasks.TASKS (a test checks it) so that listing the
# plugin does not import those modules' dependencies.
METAWORLD_TASKS = (
    "reach",
    "push",
    "pick-place",
    "door-open",
    "drawer-open",
    "button-press",
    "window-open",
    "hammer",
)
RLBENCH_TASKS = (
    "reach-target",
    "pick-up-cup",
    "open-drawer",
    "take-lid-off-saucepan",
    "turn-tap",
    "stack-wine",
    "open-microwave",
    "open-oven",
    "phone-on-base",
    "put-money-in-safe",
    "toilet-seat-up",
    "sweep-to-dustpan",
    "meat-off-grill",
)

_N_DEMOS = Param("n_demos", 50, "expert demonstrations collected for the cell, seeded by the cell seed (0: none)")


def _metaworld_spec(task: str) -> EnvironmentSpec:
    return EnvironmentSpec(
        name=f"metaworld-{task}",
        version="1",
        description=(
            f"Meta-World v3 {task}-v3 (MT1: 50 goal configurations drawn from the seed) with scripted-expert "
            "demonstrations; RLBench's protocol on a simulator that runs here"
        ),
        task_kind=TASK_KIND,
        make="harness_rlbench.metaworld_tasks:make",
        params=(
            Param("task", task, "Meta-World task", choices=(task,)),
            _N_DEMOS,
            Param(
                "reward_type",
                "sparse",
                "sparse: 1 on success else 0; dense: Meta-World's shaped reward",
                choices=REWARD_TYPES,
            ),
            Param("max_episode_steps", 200, "episode cap (Meta-World's own is 500; experts need < 150)"),
            Param("terminate_on_success", True, "end the episode when the task succeeds, as RLBench does"),
        ),
    )


def _rlbench_spec(task: str) -> EnvironmentSpec:
    return EnvironmentSpec(
        name=f"rlbench-{task}",
        version="1",
        description=(
            f"RLBench {task} (CoppeliaSim), low-dimensional state, joint-velocity + discrete-gripper actions, "
            "sparse success reward, motion-planner demonstrations from get_demos"
        ),
        task_kind=TASK_KIND,
        make="harness_rlbench.rlbench_tasks:make",
        requires="harness_rlbench.rlbench_tasks:requires",
        params=(
            Param("task", task, "RLBench task", choices=(task,)),
            _N_DEMOS,
            Param(
                "reward_type", "sparse", "RLBench's success reward (demos carry no shaped reward)", choices=("sparse",)
            ),
            Param("max_episode_steps", 200, "episode cap in control steps (RLBench ends on success itself)"),
        ),
    )


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    return [_metaworld_spec(task) for task in METAWORLD_TASKS] + [_rlbench_spec(t) for t in RLBENCH_TASKS]


@hookimpl
def harness_suites() -> list[Path]:
    """suites/metaworld.toml and suites/rlbench.toml, shipped as package data (links to the repository's files
    in a source checkout), so `harness run metaworld` works from any directory."""
    suites = Path(__file__).parent / "suites"
    return [suites / name for name in ("metaworld.toml", "rlbench.toml") if (suites / name).is_file()]
