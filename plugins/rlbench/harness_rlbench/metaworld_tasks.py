"""Meta-World v3 manipulation tasks with scripted experts: the runnable substitute for RLBench.

Meta-World (Yu et al. 2019, https://arxiv.org/abs/1910.10897; v3 from Farama, ``pip install metaworld``) is a
MuJoCo Sawyer arm with 50 tasks. Each ``MT1`` environment draws 50 goal/object configurations of one task from
its seed and picks one at random at every reset; the goal is part of the 39-d observation. Its hand-written
scripted policies (``metaworld.policies``) play the role RLBench's motion-planner demonstrations play in the
ARSQ and CQN papers: a reliable expert whose episodes seed the replay buffer or train behaviour cloning.

The protocol here follows RLBench's: the reward is sparse (1 on success, else 0) unless ``reward_type="dense"``
asks for Meta-World's shaped reward, and an episode ends on success (``terminate_on_success``). With the sparse
reward success is the MDP's terminal state. With the dense one it is not: the shaped reward is positive at every
step, so a terminal success would forfeit the rest of the episode's reward and teach an agent to stay just short
of the goal (SAC's success rate fell from 0.7 to 0.1 over training that way). There, ending at success is
reported as a truncation, which learners bootstrap through, like a time limit. Episodes are
capped at ``max_episode_steps`` (200 by default, shorter than Meta-World's 500 to keep CPU budgets small; the
experts need under 150 steps on these tasks, see benchmarks/rlbench/expert_success.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from harness import CellContext
from harness_rlbench.manipulation import (
    REWARD_TYPES,
    Episode,
    ManipulationEnvironment,
    cached_demonstrations,
    check_demonstrations,
    demo_seed,
    episodes_to_qlearning,
)

#: Harness task name -> (Meta-World v3 environment name, scripted expert class in ``metaworld.policies``).
TASKS: dict[str, tuple[str, str]] = {
    "reach": ("reach-v3", "SawyerReachV3Policy"),
    "push": ("push-v3", "SawyerPushV3Policy"),
    "pick-place": ("pick-place-v3", "SawyerPickPlaceV3Policy"),
    "door-open": ("door-open-v3", "SawyerDoorOpenV3Policy"),
    "drawer-open": ("drawer-open-v3", "SawyerDrawerOpenV3Policy"),
    "button-press": ("button-press-v3", "SawyerButtonPressV3Policy"),
    "window-open": ("window-open-v3", "SawyerWindowOpenV3Policy"),
    "hammer": ("hammer-v3", "SawyerHammerV3Policy"),
}

OBSERVATION_DIM = 39  # hand xyz + gripper, two object poses, the same for the previous frame, goal xyz
ACTION_DIM = 4  # end-effector xyz displacement and gripper effort, each in [-1, 1]
METAWORLD_MAX_PATH_LENGTH = 500  # the simulator refuses to step past this without a reset
# RLBench's get_demos retries a failed live demo up to 10 times before giving up; so do we.
MAX_ATTEMPTS_PER_DEMO = 10


def _import_gym_and_metaworld() -> Any:
    import gymnasium
    import metaworld  # noqa: F401 - importing registers the "Meta-World/..." environment ids

    return gymnasium


def _task_entry(task: str) -> tuple[str, str]:
    if task not in TASKS:
        raise ValueError(f"unknown Meta-World task {task!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[task]


def _make_success_wrapper_class(gym: Any) -> type:
    class ManipulationWrapper(gym.Wrapper):
        """The manipulation contract on top of a Meta-World env: float32 observations, a boolean
        ``info["success"]``, success-as-reward when sparse, and the factory seed used by the first reset."""

        def __init__(self, env: Any, reward_type: str, seed: int) -> None:
            super().__init__(env)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBSERVATION_DIM,), np.float32)
            self._sparse = reward_type == "sparse"
            self._pending_seed: int | None = seed

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
            if seed is None:
                seed = self._pending_seed
            self._pending_seed = None
            obs, info = self.env.reset(seed=seed, options=options)
            return obs.astype(np.float32), info

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
            obs, reward, terminated, truncated, info = self.env.step(action)
            success = bool(info["success"])
            info["success"] = success
            if self._sparse:
                reward = float(success)
            elif terminated and success:
                terminated, truncated = False, True  # the episode is cut, not over (module docstring)
            return obs.astype(np.float32), float(reward), terminated, truncated, info

    return ManipulationWrapper


_WRAPPER_CLASS: type | None = None


def check_options(task: str, reward_type: str, max_episode_steps: int) -> str:
    """The Meta-World environment name for ``task``; ValueError naming the option at fault otherwise."""
    env_name, _ = _task_entry(task)
    if reward_type not in REWARD_TYPES:
        raise ValueError(f"reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
    if not 1 <= max_episode_steps <= METAWORLD_MAX_PATH_LENGTH:
        raise ValueError(
            f"max_episode_steps must be in [1, {METAWORLD_MAX_PATH_LENGTH}] (Meta-World's path limit), "
            f"got {max_episode_steps}"
        )
    return env_name


def make_metaworld_env(
    task: str,
    seed: int,
    *,
    reward_type: str = "sparse",
    max_episode_steps: int = 200,
    terminate_on_success: bool = True,
) -> Any:
    """A Gymnasium env for one Meta-World task under the manipulation contract (see the module docstring)."""
    global _WRAPPER_CLASS
    env_name = check_options(task, reward_type, max_episode_steps)
    gym = _import_gym_and_metaworld()
    env = gym.make(
        "Meta-World/MT1",
        env_name=env_name,
        seed=int(seed),
        terminate_on_success=terminate_on_success,
        max_episode_steps=max_episode_steps,
        # Meta-World's observation bounds are loose (goal bounds are 0..0); the passive checker would warn on
        # every episode, and warnings are errors in our tests.
        disable_env_checker=True,
    )
    if _WRAPPER_CLASS is None:
        _WRAPPER_CLASS = _make_success_wrapper_class(gym)
    return _WRAPPER_CLASS(env, reward_type, int(seed))


def make_expert(task: str) -> Any:
    """The scripted Meta-World policy for ``task`` (``get_action(obs) -> action``)."""
    from metaworld import policies

    _, policy_name = _task_entry(task)
    return getattr(policies, policy_name)()


def expert_action(expert: Any, obs: np.ndarray) -> np.ndarray:
    """The expert's action, clipped to the action box the environment applies (so BC learns what was done)."""
    with warnings.catch_warnings():
        # The scripted policies warn when their gains exceed the action box; the env clips, and so do we.
        warnings.simplefilter("ignore", UserWarning)
        action = expert.get_action(obs.astype(np.float64))
    return np.clip(np.asarray(action, np.float32), -1.0, 1.0)


def run_expert_episode(env: Any, expert: Any, seed: int | None = None) -> Episode:
    """Roll the expert out for one episode; stops at termination, truncation or (when the env does not
    terminate on success) at the first success, because a demonstration is over once the task is done."""
    episode = Episode()
    obs, _ = env.reset(seed=seed)
    while True:
        action = expert_action(expert, obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        episode.observations.append(obs)
        episode.actions.append(action)
        episode.rewards.append(float(reward))
        episode.next_observations.append(next_obs)
        episode.terminals.append(bool(terminated))
        obs = next_obs
        if info["success"]:
            episode.success = True
        if terminated or truncated or episode.success:
            return episode


def collect_expert_episodes(env: Any, expert: Any, n_demos: int, seed: int) -> tuple[list[Episode], int]:
    """``n_demos`` successful expert episodes and the number of attempts it took.

    Like RLBench's ``get_demos``, failed attempts are discarded and retried (a demonstration that fails the
    task is not a demonstration); more than ``MAX_ATTEMPTS_PER_DEMO`` failures for one demo is an error.
    """
    episodes: list[Episode] = []
    attempts = 0
    failures_in_a_row = 0
    while len(episodes) < n_demos:
        episode = run_expert_episode(env, expert, seed=seed if attempts == 0 else None)
        attempts += 1
        if episode.success:
            episodes.append(episode)
            failures_in_a_row = 0
            continue
        failures_in_a_row += 1
        if failures_in_a_row >= MAX_ATTEMPTS_PER_DEMO:
            raise RuntimeError(
                f"the scripted expert failed {failures_in_a_row} episodes in a row on {env.unwrapped!r}; "
                "could not collect demonstrations (is max_episode_steps too small for this task?)"
            )
    return episodes, attempts


def make(params: dict[str, Any], context: CellContext) -> ManipulationEnvironment:
    """``make`` of every ``metaworld-<task>`` spec: the env factory and seeded expert demonstrations."""
    task = params["task"]
    reward_type = params["reward_type"]
    max_episode_steps = int(params["max_episode_steps"])
    terminate_on_success = bool(params["terminate_on_success"])
    n_demos = int(params["n_demos"])
    if n_demos < 0:
        raise ValueError(f"metaworld-{task}.n_demos must be >= 0, got {n_demos}")
    check_options(task, reward_type, max_episode_steps)
    env_options = {
        "reward_type": reward_type,
        "max_episode_steps": max_episode_steps,
        "terminate_on_success": terminate_on_success,
    }

    def make_env(seed: int) -> Any:
        return make_metaworld_env(task, seed, **env_options)

    seed = demo_seed(context.seed)
    stats: dict[str, Any] = {}

    def collect() -> dict[str, np.ndarray]:
        if n_demos == 0:
            return episodes_to_qlearning([], OBSERVATION_DIM, ACTION_DIM)
        env = make_env(seed)
        try:
            episodes, attempts = collect_expert_episodes(env, make_expert(task), n_demos, seed)
        finally:
            env.close()
        stats["demo_attempts"] = attempts
        return episodes_to_qlearning(episodes, OBSERVATION_DIM, ACTION_DIM)

    import metaworld

    from harness_rlbench import __version__

    key = {
        "simulator": "metaworld",
        "dense_success": "truncates",  # demos cached before dense success became a truncation are stale
        "metaworld": getattr(metaworld, "__version__", "?"),
        "plugin": __version__,
        "task": task,
        "n_demos": n_demos,
        "demo_seed": seed,
        **env_options,
    }
    cache_dir = getattr(context, "cache_dir", None)
    demos, from_cache = cached_demonstrations(cache_dir, key, collect)
    check_demonstrations(demos, OBSERVATION_DIM, ACTION_DIM)
    return ManipulationEnvironment(
        name=f"metaworld-{task}",
        make_env=make_env,
        demonstrations=demos,
        observation_dim=OBSERVATION_DIM,
        action_dim=ACTION_DIM,
        max_episode_steps=max_episode_steps,
        reward_type=reward_type,
        info={
            "simulator": "Meta-World v3",
            "env_name": TASKS[task][0],
            "n_demos": n_demos,
            "demo_transitions": len(demos["actions"]),
            "demo_seed": seed,
            "demos_from_cache": from_cache,
            **stats,
        },
    )
