"""Every offline algorithm trains a few dozen steps on real InvertedPendulum-v5 data, evaluates, reports the
outcome keys, resumes from its checkpoint and is deterministic for a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from harness_rl import arsq, bc, iql, riql, td3_bc
from harness_rl.plugin import harness_algorithms

SMALL = {"batch_size": 32, "hidden_dim": 32}
OFFLINE_RUNS = {"bc": bc.run, "td3-bc": td3_bc.run, "iql": iql.run, "riql": riql.run, "arsq": arsq.run}
BUDGET = {"gradient_steps": 30, "eval_every": 15, "eval_episodes": 2}


def params_for(name: str, **overrides) -> dict:
    spec = next(s for s in harness_algorithms() if s.name == name)
    return spec.resolve_params({**{k: v for k, v in SMALL.items() if spec.param(k)}, **overrides})


@pytest.mark.parametrize("name", sorted(OFFLINE_RUNS))
def test_offline_algorithm_runs_evaluates_and_logs(name, tiny_task, make_context):
    context = make_context(BUDGET)
    outcome = OFFLINE_RUNS[name](environment=tiny_task, params=params_for(name), context=context)
    assert outcome["gradient_steps"] == 30 and outcome["finished"]
    assert outcome["gradient_steps_per_s"] > 0 and outcome["env_steps_per_s"] > 0
    assert len(outcome["eval_returns"]) == 2 and math.isfinite(outcome["return_mean"])
    # The final normalized score is computed once, by the metric, from these returns (not by the algorithm).
    assert "normalized_score" not in outcome
    assert outcome["curve"][-1]["normalized_score"] == pytest.approx(100 * outcome["curve"][-1]["return"] / 40)
    assert [p["step"] for p in outcome["curve"]] == [15.0, 30.0]
    logged = [(n, s) for n, s, _ in context.history]
    assert ("normalized_score", 15) in logged and ("return", 30) in logged


@pytest.mark.parametrize("name", sorted(OFFLINE_RUNS))
def test_offline_algorithm_resumes_and_is_deterministic(name, tiny_task, make_context):
    run = OFFLINE_RUNS[name]
    straight = run(environment=tiny_task, params=params_for(name), context=make_context(BUDGET, name="a"))
    # Same seed, same cell folder: first 15 steps, then the rest from the checkpoint.
    partial = run(
        environment=tiny_task, params=params_for(name), context=make_context({**BUDGET, "gradient_steps": 15}, name="b")
    )
    assert partial["gradient_steps"] == 15
    resumed_context = make_context(BUDGET, name="b")
    resumed = run(environment=tiny_task, params=params_for(name), context=resumed_context)
    assert resumed["gradient_steps"] == 30
    assert [p["step"] for p in resumed["curve"]] == [15.0, 30.0]
    assert ("return", 15) in [(n, s) for n, s, _ in resumed_context.history]  # replayed from the checkpoint
    again = run(environment=tiny_task, params=params_for(name), context=make_context(BUDGET, name="c"))
    assert again["eval_returns"] == straight["eval_returns"]
    assert again["curve"] == straight["curve"]


@pytest.mark.parametrize("name", ["td3-bc", "iql", "arsq"])
def test_offline_to_online_protocol(name, tiny_task, make_context):
    context = make_context({"env_steps": 60, "eval_every": 30, "eval_episodes": 1})
    outcome = OFFLINE_RUNS[name](
        environment=tiny_task, params=params_for(name, protocol="offline-to-online"), context=context
    )
    assert outcome["protocol"] == "offline-to-online"
    assert outcome["env_steps"] == 60 and outcome["gradient_steps"] == 60  # 600 demos: updates from step 1
    assert [p["env_steps"] for p in outcome["curve"]] == [30.0, 60.0]
    assert outcome["demonstrations"] == 600


def test_bc_learns_a_linear_mapping(tiny_task, make_context):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2000, 4)).astype(np.float32)
    weights = np.array([[0.5], [-0.3], [0.2], [0.1]], np.float32)
    tiny_task.dataset = {
        "observations": obs,
        "actions": np.tanh(obs @ weights),
        "rewards": np.zeros(2000, np.float32),
        "next_observations": obs,
        "terminals": np.ones(2000, np.float32),
    }
    import torch
    from harness_rl.bc import BCConfig, BCTrainer

    mean, std = np.zeros(4, np.float32), np.ones(4, np.float32)
    trainer = BCTrainer(4, 1, mean, std, BCConfig(hidden_dim=64, learning_rate=1e-3), "cpu")
    data = {k: torch.as_tensor(v) for k, v in tiny_task.dataset.items()}
    for _ in range(300):
        index = torch.randint(0, 2000, (128,))
        trainer.update({k: v[index] for k, v in data.items()})
    test_obs = rng.normal(size=(200, 4)).astype(np.float32)
    error = np.abs(trainer.policy_action(test_obs) - np.tanh(test_obs @ weights)).mean()
    assert error < 0.05


def test_bc_top_fraction_keeps_the_best_trajectories(tiny_dataset):
    from harness_rl.bc import keep_best_trajectories
    from harness_rl.data import trajectory_returns

    returns, _ = trajectory_returns(tiny_dataset)
    assert len(returns) > 5 and returns.sum() == pytest.approx(tiny_dataset["rewards"].sum())
    best = keep_best_trajectories(tiny_dataset, 0.2)
    kept_returns, _ = trajectory_returns(best)
    assert sorted(kept_returns) == sorted(np.sort(returns)[::-1][: round(0.2 * len(returns))])


def test_missing_dataset_is_a_clear_error(tiny_task, make_context):
    tiny_task.dataset = {}
    with pytest.raises(ValueError, match="provides no dataset or demonstrations"):
        iql.run(environment=tiny_task, params=params_for("iql"), context=make_context(BUDGET))


def test_deadline_stops_with_a_checkpoint_and_a_rerun_resumes(tiny_task, make_context):
    import time

    from harness_rl.training import TrainingInterrupted

    context = make_context(BUDGET, name="deadline")
    context.deadline = time.time() + 10  # inside the safety margin: stop before the first step
    with pytest.raises(TrainingInterrupted, match=r"stopped at 0 of 30 gradient steps.*run the suite again"):
        iql.run(environment=tiny_task, params=params_for("iql"), context=context)
    assert (context.checkpoint_dir / "iql.pt").exists()
    outcome = iql.run(environment=tiny_task, params=params_for("iql"), context=make_context(BUDGET, name="deadline"))
    assert outcome["finished"] and outcome["gradient_steps"] == 30


def random_batches(obs_dim: int, act_dim: int, count: int, size: int = 64) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=generator)

    return [
        {
            "observations": draw(size, obs_dim),
            "actions": draw(size, act_dim).clamp(-0.99, 0.99),
            "rewards": draw(size),
            "next_observations": draw(size, obs_dim),
            "terminals": (draw(size) > 1.5).float(),
        }
        for _ in range(count)
    ]


def iql_trainer(config):
    import torch

    torch.manual_seed(0)  # the same initial networks for every trainer built here
    return iql.IQLTrainer(4, 2, np.zeros(4, np.float32), np.ones(4, np.float32), config, 10, "cpu")


def td3_trainer(config):
    import torch

    torch.manual_seed(0)
    return td3_bc.TD3BCTrainer(4, 2, np.zeros(4, np.float32), np.ones(4, np.float32), config, "cpu")


def test_iql_one_backward_equals_corls_three_separate_updates():
    """IQLTrainer.update takes one backward pass of the summed losses; CORL steps value, Q and actor one after
    another. Each loss reaches only its own network, so the parameters must come out the same."""
    import torch
    import torch.nn.functional as F

    config = iql.IQLConfig(hidden_dim=32)
    fused, corl = (iql_trainer(config) for _ in range(2))
    for batch in random_batches(4, 2, 4):
        fused.update(batch)
        # CORL's update, verbatim in structure: value step, Q step + Polyak, actor step.
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        with torch.no_grad():
            target_q = corl.q_target(obs, actions)
            next_v = corl.vf(next_obs).squeeze(-1)
        advantage = target_q - corl.vf(obs).squeeze(-1)
        v_loss = iql.expectile_loss(advantage, config.iql_tau)
        corl.v_optimizer.zero_grad()
        v_loss.backward()
        corl.v_optimizer.step()
        targets = batch["rewards"] + (1.0 - batch["terminals"]) * config.discount * next_v
        q1, q2 = corl.qf.both(obs, actions)
        q_loss = (F.mse_loss(q1, targets) + F.mse_loss(q2, targets)) / 2
        corl.q_optimizer.zero_grad()
        q_loss.backward()
        corl.q_optimizer.step()
        with torch.no_grad():
            for p, tp in zip(corl.qf.parameters(), corl.q_target.parameters(), strict=True):
                tp.mul_(1 - config.tau).add_(p, alpha=config.tau)
        weights = torch.exp(config.beta * advantage.detach()).clamp(max=iql.EXP_ADV_MAX)
        actor_loss = torch.mean(weights * -corl.actor(obs).log_prob(actions).sum(-1))
        corl.actor_optimizer.zero_grad()
        actor_loss.backward()
        corl.actor_optimizer.step()
        corl.actor_schedule.step()
    for name in ("vf", "qf", "q_target", "actor"):
        for a, b in zip(getattr(fused, name).parameters(), getattr(corl, name).parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.timeout(900)
def test_compiled_updates_match_eager_ones():
    """compile = "default" runs the losses through torch.compile (C++ from inductor on this CPU): same
    losses and parameters as eager PyTorch, step for step, for IQL and TD3+BC (4 steps: two actor updates)."""
    import torch
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    iql_eager = iql_trainer(iql.IQLConfig(hidden_dim=32))
    iql_compiled = iql_trainer(iql.IQLConfig(hidden_dim=32, compile="default"))
    td3_eager = td3_trainer(td3_bc.TD3BCConfig(hidden_dim=32))
    td3_compiled = td3_trainer(td3_bc.TD3BCConfig(hidden_dim=32, compile="default"))
    for batch in random_batches(4, 2, 4):
        torch.manual_seed(1)  # the same target-smoothing noise on both sides
        expected = {**iql_eager.update(batch), **td3_eager.update(batch)}
        torch.manual_seed(1)
        got = {**iql_compiled.update(batch), **td3_compiled.update(batch)}
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
    assert counters["stats"]["unique_graphs"] >= graphs_before + 3  # IQL's losses, TD3+BC's critic and actor
    for eager, compiled_ in ((iql_eager, iql_compiled), (td3_eager, td3_compiled)):
        for a, b in zip(eager.actor.parameters(), compiled_.actor.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_compile_mode_is_a_clear_error():
    with pytest.raises(ValueError, match=r"compile = 'fast': choose one of off, default, reduce-overhead"):
        iql_trainer(iql.IQLConfig(compile="fast"))
