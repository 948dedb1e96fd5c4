"""RLBench tasks (James et al. 2020, https://arxiv.org/abs/1909.12271) under the manipulation contract.

RLBench runs on CoppeliaSim through PyRep; neither is on PyPI, so this module imports ``rlbench`` only inside
:func:`make`, and :func:`requires` tells the harness (and ``harness list``) what to install when it is absent.

The protocol follows the RLBench experiments of ARSQ and CQN: low-dimensional state observations
(``Observation.get_low_dim_data()``), ``MoveArmThenGripper(JointVelocity(), Discrete())`` actions (7 joint
velocities and a gripper open/close command), the task's sparse success reward, episodes that end when the task
reports termination, and expert demonstrations from ``TaskEnvironment.get_demos(n, live_demos=True)`` (the
motion planner following the task's waypoints), converted to transitions by taking as action at step ``t`` the
joint velocities and gripper state recorded at step ``t + 1``.

PyRep drives one CoppeliaSim instance per process, so every env from ``make_env`` shares the task's simulator:
resetting one interrupts the episode another had open; that env's next ``step`` reports ``truncated=True`` with
``info["interrupted"] = True`` rather than acting in a scene it no longer owns.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import numpy as np

from harness import CellContext
from harness_rlbench.manipulation import (
    Episode,
    ManipulationEnvironment,
    check_demonstrations,
    demo_seed,
    episodes_to_qlearning,
)

#: Harness task name -> RLBench task module in ``rlbench.tasks`` (the class is its CamelCase name). Tasks
#: reported by ARSQ and CQN in their RLBench experiments.
TASKS: dict[str, str] = {
    "reach-target": "reach_target",
    "pick-up-cup": "pick_up_cup",
    "open-drawer": "open_drawer",
    "take-lid-off-saucepan": "take_lid_off_saucepan",
    "turn-tap": "turn_tap",
    "stack-wine": "stack_wine",
    "open-microwave": "open_microwave",
    "open-oven": "open_oven",
    "phone-on-base": "phone_on_base",
    "put-money-in-safe": "put_money_in_safe",
    "toilet-seat-up": "toilet_seat_up",
    "sweep-to-dustpan": "sweep_to_dustpan",
    "meat-off-grill": "meat_off_grill",
}

INSTALL_HINT = (
    "install CoppeliaSim 4.1 (set COPPELIASIM_ROOT, and add it to LD_LIBRARY_PATH and "
    "QT_QPA_PLATFORM_PLUGIN_PATH), then PyRep (pip install git+https://github.com/stepjam/PyRep.git) and "
    "RLBench (pip install git+https://github.com/stepjam/RLBench.git); see "
    "https://github.com/stepjam/RLBench#install"
)


def requires() -> str | None:
    """None when RLBench can run here, else what is missing and how to install it (the runner's skip reason).

    Looks for the packages without importing them: importing PyRep loads CoppeliaSim's library.
    """
    missing = [name for name in ("rlbench", "pyrep") if importlib.util.find_spec(name) is None]
    if missing:
        return f"RLBench is not available ({' and '.join(missing)} not importable): {INSTALL_HINT}"
    if not os.environ.get("COPPELIASIM_ROOT"):
        return f"RLBench is installed but COPPELIASIM_ROOT is not set: {INSTALL_HINT}"
    return None


def task_class(task: str) -> type:
    """The RLBench task class for a harness task name (``reach-target`` -> ``rlbench.tasks.ReachTarget``)."""
    if task not in TASKS:
        raise ValueError(f"unknown RLBench task {task!r}; known tasks: {', '.join(TASKS)}")
    module_name = TASKS[task]
    class_name = "".join(word[:1].upper() + word[1:] for word in module_name.split("_"))
    return getattr(importlib.import_module(f"rlbench.tasks.{module_name}"), class_name)


def demo_to_episode(demo: Any) -> Episode:
    """One RLBench ``Demo`` (a sequence of ``Observation``) as transitions under JointVelocity + Discrete."""
    episode = Episode(success=True)  # get_demos only returns demos whose episode succeeded
    steps = len(demo)
    for t in range(steps - 1):
        now, after = demo[t], demo[t + 1]
        action = np.concatenate([after.joint_velocities, [float(after.gripper_open)]]).astype(np.float32)
        last = t == steps - 2
        episode.observations.append(now.get_low_dim_data().astype(np.float32))
        episode.actions.append(action)
        episode.rewards.append(1.0 if last else 0.0)
        episode.next_observations.append(after.get_low_dim_data().astype(np.float32))
        episode.terminals.append(last)
    return episode


class RLBenchSession:
    """One launched CoppeliaSim with one task loaded: shared by every env of an environment object."""

    def __init__(self, task: str, headless: bool = True) -> None:
        from rlbench.action_modes.action_mode import MoveArmThenGripper
        from rlbench.action_modes.arm_action_modes import JointVelocity
        from rlbench.action_modes.gripper_action_modes import Discrete
        from rlbench.environment import Environment
        from rlbench.observation_config import ObservationConfig

        obs_config = ObservationConfig()
        obs_config.set_all_high_dim(False)  # no cameras: the state protocol
        obs_config.set_all_low_dim(True)
        self.environment = Environment(
            MoveArmThenGripper(JointVelocity(), Discrete()), obs_config=obs_config, headless=headless
        )
        self.environment.launch()
        self.task_env = self.environment.get_task(task_class(task))
        self.owner: object | None = None  # the env whose episode is open in the scene
        _, first = self.task_env.reset()
        self.observation_dim = int(first.get_low_dim_data().shape[0])
        self.action_dim = int(self.environment.action_shape[0])

    def demonstrations(self, n_demos: int, seed: int) -> list[Episode]:
        # RLBench draws object placements from numpy's global generator.
        np.random.seed(seed % 2**32)
        self.owner = None
        return [demo_to_episode(demo) for demo in self.task_env.get_demos(n_demos, live_demos=True)]

    def close(self) -> None:
        self.environment.shutdown()


def _gym_env_class() -> type:
    import gymnasium as gym
    from rlbench.backend.exceptions import InvalidActionError

    class RLBenchGymEnv(gym.Env):
        """A Gymnasium view of an :class:`RLBenchSession` under the manipulation contract."""

        metadata: dict[str, Any] = {"render_modes": []}

        def __init__(self, session: RLBenchSession, seed: int, max_episode_steps: int) -> None:
            self.session = session
            self.max_episode_steps = max_episode_steps
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (session.observation_dim,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (session.action_dim,), np.float32)
            self._pending_seed: int | None = seed
            self._steps = 0
            self._last_obs = np.zeros(session.observation_dim, np.float32)

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
            super().reset(seed=seed)
            seed = self._pending_seed if seed is None else seed
            self._pending_seed = None
            if seed is not None:
                np.random.seed(seed % 2**32)  # RLBench samples placements from the global generator
            _, obs = self.session.task_env.reset()
            self.session.owner = self
            self._steps = 0
            self._last_obs = obs.get_low_dim_data().astype(np.float32)
            return self._last_obs, {}

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            if self.session.owner is not self:
                return self._last_obs, 0.0, False, True, {"success": False, "interrupted": True}
            self._steps += 1
            try:
                obs, reward, terminate = self.session.task_env.step(np.asarray(action, np.float64))
            except InvalidActionError:
                # An action the arm cannot execute ends the episode as a failure (as CQN's wrapper does).
                return self._last_obs, 0.0, True, False, {"success": False, "invalid_action": True}
            self._last_obs = obs.get_low_dim_data().astype(np.float32)
            success = bool(reward >= 1.0)  # the sparse reward is float(success)
            truncated = not terminate and self._steps >= self.max_episode_steps
            return self._last_obs, float(reward), bool(terminate), truncated, {"success": success}

    return RLBenchGymEnv


def make(params: dict[str, Any], context: CellContext) -> ManipulationEnvironment:
    """``make`` of every ``rlbench-<task>`` spec: launches CoppeliaSim, collects live demos."""
    reason = requires()
    if reason is not None:
        raise RuntimeError(reason)
    task = params["task"]
    n_demos = int(params["n_demos"])
    max_episode_steps = int(params["max_episode_steps"])
    session = RLBenchSession(task, headless=True)
    try:
        seed = demo_seed(context.seed)
        episodes = session.demonstrations(n_demos, seed) if n_demos > 0 else []
        demos = episodes_to_qlearning(episodes, session.observation_dim, session.action_dim)
        check_demonstrations(demos, session.observation_dim, session.action_dim)
        env_class = _gym_env_class()
    except BaseException:
        session.close()
        raise

    def make_env(env_seed: int) -> Any:
        return env_class(session, int(env_seed), max_episode_steps)

    return ManipulationEnvironment(
        name=f"rlbench-{task}",
        make_env=make_env,
        demonstrations=demos,
        observation_dim=session.observation_dim,
        action_dim=session.action_dim,
        max_episode_steps=max_episode_steps,
        reward_type="sparse",
        info={"simulator": "RLBench", "n_demos": n_demos, "demo_seed": seed, "task_class": TASKS[task]},
        _close=session.close,
    )
