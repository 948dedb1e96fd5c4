"""The refactored updates compute what their references compute: same seed, same batch, identical losses and
parameters. The references are written out here in the structure of CleanRL's ``sac_continuous_action.py``
(SAC) and of the TD3+BC-regularized actor loss WSRL's pretraining used before it got its own trainer."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from harness_rl.data import ReplayBuffer, sample_batch
from harness_rl.sac import SACConfig, SACTrainer, make_agent
from harness_rl.training import Online, train
from harness_rl.wsrl import WSRLConfig, WSRLPretrainer

OBS_DIM, ACT_DIM = 5, 2


def batches(count: int, size: int = 32) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=generator)

    return [
        {
            "observations": draw(size, OBS_DIM),
            "actions": draw(size, ACT_DIM).clamp(-0.99, 0.99),
            "rewards": draw(size),
            "next_observations": draw(size, OBS_DIM),
            "terminals": (draw(size) > 1.5).float(),
        }
        for _ in range(count)
    ]


def agent(config):
    torch.manual_seed(0)
    return make_agent(OBS_DIM, ACT_DIM, -np.ones(ACT_DIM), np.ones(ACT_DIM), config.hidden_dim, "cpu", config.alpha)


def reference_update(trainer: SACTrainer, batch, bc_weight: float | None = None) -> dict[str, float]:
    """CleanRL's SAC step (critic, delayed actor and temperature, targets) on ``trainer``'s networks; with
    ``bc_weight`` the actor loss is the TD3+BC-regularized one of WSRL's pretraining."""
    a, cfg = trainer.agent, trainer.config
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    with torch.no_grad():
        next_pi, next_log_pi, _ = a.actor.sample(next_obs)
        qf_next = torch.min(trainer.qf1_target(next_obs, next_pi), trainer.qf2_target(next_obs, next_pi))
        next_q = batch["rewards"][:, None] + (1 - batch["terminals"][:, None]) * cfg.gamma * (
            qf_next - trainer.alpha * next_log_pi
        )
    qf_loss = F.mse_loss(a.qf1(obs, actions), next_q) + F.mse_loss(a.qf2(obs, actions), next_q)
    trainer.q_optimizer.zero_grad()
    qf_loss.backward()
    trainer.q_optimizer.step()
    info = {"q_loss": qf_loss.item()}
    trainer.steps += 1
    if trainer.steps % cfg.policy_frequency == 0:
        for _ in range(cfg.policy_frequency):
            pi, log_pi, _ = a.actor.sample(obs)
            min_q = torch.min(a.qf1(obs, pi), a.qf2(obs, pi))
            if bc_weight is None:
                actor_loss = ((trainer.alpha * log_pi) - min_q).mean()
            else:
                lmbda = bc_weight / min_q.abs().mean().detach()
                actor_loss = (trainer.alpha * log_pi).mean() - lmbda * min_q.mean() + F.mse_loss(pi, actions)
            trainer.actor_optimizer.zero_grad()
            actor_loss.backward()
            trainer.actor_optimizer.step()
            if cfg.autotune:
                with torch.no_grad():
                    _, log_pi, _ = a.actor.sample(obs)
                alpha_loss = (-a.log_alpha.exp() * (log_pi + trainer.target_entropy)).mean()
                trainer.alpha_optimizer.zero_grad()
                alpha_loss.backward()
                trainer.alpha_optimizer.step()
                trainer.alpha = a.log_alpha.exp().item()
        info["actor_loss"] = actor_loss.item()
    with torch.no_grad():
        for net, target in ((a.qf1, trainer.qf1_target), (a.qf2, trainer.qf2_target)):
            for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                tp.mul_(1 - cfg.tau).add_(p, alpha=cfg.tau)
    return info


def assert_same(trainer, reference, infos, reference_infos) -> None:
    assert infos == reference_infos  # identical floats, not merely close
    for name in ("actor", "qf1", "qf2"):
        ours, theirs = getattr(trainer.agent, name), getattr(reference.agent, name)
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(trainer.agent.log_alpha, reference.agent.log_alpha, rtol=0, atol=0)


def test_sac_update_equals_cleanrls():
    config = SACConfig(hidden_dim=16)
    trainer, reference = SACTrainer(agent(config), config), SACTrainer(agent(config), config)
    infos, reference_infos = [], []
    for batch in batches(4):  # two delayed actor updates
        torch.manual_seed(1)
        infos.append(trainer.update(batch))
        torch.manual_seed(1)
        reference_infos.append(reference_update(reference, batch))
    assert_same(trainer, reference, infos, reference_infos)


def test_wsrl_pretraining_update_equals_the_td3_bc_regularized_sac_step():
    config = WSRLConfig(hidden_dim=16, bc_weight=2.5)
    trainer = WSRLPretrainer(agent(config), config)
    reference = SACTrainer(agent(config), config)  # the plain SAC trainer, with the reference's actor loss
    infos, reference_infos = [], []
    for batch in batches(4):
        torch.manual_seed(1)
        infos.append(trainer.update(batch))
        torch.manual_seed(1)
        reference_infos.append(reference_update(reference, batch, bc_weight=config.bc_weight))
    assert_same(trainer, reference, infos, reference_infos)
    # And it is not SAC's loss: the regularizer changes the actor.
    plain = SACTrainer(agent(config), config)
    for batch in batches(4):
        torch.manual_seed(1)
        plain.update(batch)
    assert not torch.equal(plain.agent.actor.mean.weight, trainer.agent.actor.mean.weight)


class Recorder:
    """A trainer that records the batches it is given (and acts at random)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []

    def update(self, batch):
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return {}

    def policy_action(self, obs):
        return np.zeros(1, np.float32)

    def explore_action(self, obs, rng):
        return rng.uniform(-1, 1, 1).astype(np.float32)

    def state(self):
        return {}

    def load(self, state):
        pass


def test_the_loop_samples_offline_batches_as_corl_does_and_reports_progress(tiny_dataset):
    """Offline: torch.randint indices from a generator seeded with the seed (CORL samples uniformly too);
    progress goes to ``progress(done, total, note=...)``."""
    reported = []
    trainer = Recorder()
    result = train(
        trainer,
        tiny_dataset,
        total=20,
        batch_size=8,
        seed=3,
        progress=lambda done, total, note="": reported.append((done, total, note)),
    )
    assert result.finished and result.gradient_steps == 20 and result.replay_buffer is None
    generator = torch.Generator().manual_seed(3)
    for batch in trainer.batches:
        index = torch.randint(0, len(tiny_dataset["observations"]), (8,), generator=generator)
        torch.testing.assert_close(batch["observations"], torch.as_tensor(tiny_dataset["observations"][index]))
    assert [d for d, _, _ in reported] == list(range(1, 21)) and reported[-1][1:] == (20, "gradient steps")


def test_the_loop_samples_online_batches_over_data_and_buffer(tiny_dataset):
    """Online: the same draws as sample_batch over the data and the replay buffer as it was at each step."""
    from harness_rl_testtask import make_inverted_pendulum

    trainer = Recorder()
    result = train(trainer, tiny_dataset, total=12, batch_size=8, seed=0, online=Online(make_inverted_pendulum))
    assert result.steps == 12 and result.gradient_steps == 12
    # Replay: the same RNG stream, the buffer rebuilt transition by transition.
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(4, 1, 12)
    online = result.replay_buffer
    for step, batch in enumerate(trainer.batches):
        rng.uniform(-1, 1, 1)  # the action drawn before the step
        buffer.add(*(online[k][step] for k in ("observations", "actions", "rewards", "next_observations")),
                   online["terminals"][step], online["timeouts"][step])  # fmt: skip
        expected = sample_batch(buffer, tiny_dataset, 8, rng, torch.device("cpu"))
        for key in ("observations", "actions", "rewards"):
            torch.testing.assert_close(batch[key], expected[key])
