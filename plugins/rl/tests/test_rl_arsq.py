"""ARSQ's discretization round-trips and its soft-advantage decomposition satisfies the soft-value identity."""

from __future__ import annotations

import itertools

import pytest
import torch
from harness_rl.arsq import AutoRegressiveSoftQ, discretize, interval_centers, undiscretize


def random_batch(generator: torch.Generator, n: int = 8) -> dict[str, torch.Tensor]:
    """A qlearning batch for 4-dimensional observations and 2-dimensional actions."""
    return {
        "observations": torch.randn(n, 4, generator=generator),
        "actions": torch.rand(n, 2, generator=generator) * 2 - 1,
        "rewards": torch.randn(n, generator=generator),
        "next_observations": torch.randn(n, 4, generator=generator),
        "terminals": torch.zeros(n),
    }


def test_discretization_round_trip_on_irregular_actions():
    generator = torch.Generator().manual_seed(0)
    actions = torch.rand(1000, 7, generator=generator) * 2 - 1
    actions[0] = torch.tensor([-1.0, 1.0, 0.0, -0.999, 0.999, 0.5, -0.5])  # bounds and exact bin edges
    indices = discretize(actions, levels=3, bins=5)
    assert indices.shape == (1000, 3, 7) and indices.min() >= 0 and indices.max() <= 4
    # A continuous action is within half a finest bin (2 / 125 / 2) of its representative.
    assert (undiscretize(indices, 5) - actions).abs().max() <= 1 / 125 + 1e-6
    # Representatives discretize back to the same indices.
    assert torch.equal(discretize(undiscretize(indices, 5), 3, 5), indices)
    # Coarse-to-fine: every level's center lies inside the previous level's interval.
    centers = interval_centers(indices, 5)
    for level in range(1, 4):
        half_width = 1.0 / 5 ** (level - 1)
        assert ((centers[:, level] - centers[:, level - 1]).abs() <= half_width + 1e-6).all()


def test_soft_advantages_normalize_and_soft_value_identity_holds():
    torch.manual_seed(0)
    levels, bins, dims, alpha = 2, 3, 2, 0.5
    net = AutoRegressiveSoftQ(obs_dim=4, act_dim=dims, levels=levels, bins=bins, hidden_dim=16, alpha=alpha)
    obs = torch.randn(3, 4)
    logits = torch.randn(3, 5, bins) * 4
    soft = net.soft_advantages(logits)
    # alpha * log softmax: exp(soft / alpha) sums to one over the bins.
    torch.testing.assert_close(torch.logsumexp(soft / alpha, -1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    # Enumerate all bins ** (levels * dims) = 81 discrete actions: alpha * logsumexp Q / alpha = V.
    every = torch.tensor(list(itertools.product(range(bins), repeat=levels * dims))).view(-1, levels, dims)
    for row in range(3):
        q = net.q_value(obs[row].expand(len(every), -1), every)
        soft_value = alpha * torch.logsumexp(q / alpha, 0)
        torch.testing.assert_close(soft_value, net.value(obs[row]).squeeze(), atol=1e-4, rtol=0)


def test_greedy_selection_maximizes_the_auto_regressive_q():
    torch.manual_seed(1)
    net = AutoRegressiveSoftQ(obs_dim=3, act_dim=2, levels=2, bins=3, hidden_dim=16, alpha=1e-3)
    obs = torch.randn(4, 3)
    chosen = net.select(obs, sample=False)
    every = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
    for row in range(4):
        q_all = net.q_value(obs[row].expand(len(every), -1), every)
        # Greedy per position is the argmax of Q up to the (tiny) temperature's entropy terms.
        assert net.q_value(obs[row : row + 1], chosen[row : row + 1]).item() == pytest.approx(
            q_all.max().item(), abs=1e-2
        )


def test_demo_penalty_is_the_published_cql_term_and_enters_the_loss_with_its_weight():
    """Per position: temperature * logsumexp(other bins / temperature) - chosen bin, summed over positions; the
    trainer's loss is the Bellman loss plus ``demo_penalty`` times both networks' mean penalty."""
    import numpy as np
    from harness_rl.arsq import ARSQConfig, ARSQTrainer, demo_penalty

    generator = torch.Generator().manual_seed(0)
    soft = torch.randn(2, 2, 3, 4, generator=generator)
    indices = torch.randint(0, 4, (2, 2, 3), generator=generator)
    temperature = 0.7
    expected = torch.zeros(2)
    for n, lv, d in itertools.product(range(2), range(2), range(3)):
        others = [soft[n, lv, d, b] for b in range(4) if b != indices[n, lv, d]]
        expected[n] += (
            temperature * torch.logsumexp(torch.stack(others) / temperature, 0) - soft[n, lv, d, indices[n, lv, d]]
        )
    torch.testing.assert_close(demo_penalty(soft, indices, temperature), expected)
    # Raising the chosen bin's advantage lowers the penalty.
    raised = soft.clone().scatter_add_(-1, indices.unsqueeze(-1), torch.ones(2, 2, 3, 1))
    assert (demo_penalty(raised, indices, temperature) < expected).all()

    batch = random_batch(generator)
    losses = {}
    for weight in (0.0, 2.5):
        torch.manual_seed(3)  # the same initial networks for both weights
        config = ARSQConfig(levels=2, bins=3, hidden_dim=16, demo_penalty=weight, demo_penalty_temperature=temperature)
        trainer = ARSQTrainer(4, 2, np.zeros(4, np.float32), np.ones(4, np.float32), config, torch.device("cpu"))
        if weight:
            from harness_rl.arsq import discretize

            indices = discretize(batch["actions"], 2, 3)
            with torch.no_grad():
                penalty = sum(
                    demo_penalty(
                        net.q_and_soft_advantages(batch["observations"], indices)[1], indices, temperature
                    ).mean()
                    for net in (trainer.q1, trainer.q2)
                )
        losses[weight] = trainer.update(batch)["q_loss"]
    assert losses[2.5] == pytest.approx(losses[0.0] + 2.5 * penalty.item(), rel=1e-5)


def test_offline_to_online_batches_apply_the_demo_penalty_to_dataset_rows_only():
    """A batch that marks its dataset rows (``from_dataset``) averages the penalty over those rows alone: the
    published method penalizes demonstrations, never the agent's own online samples."""
    import numpy as np
    from harness_rl.arsq import ARSQConfig, ARSQTrainer, demo_penalty

    batch = random_batch(torch.Generator().manual_seed(5))
    from_dataset = torch.tensor([True, True, True, False, False, False, False, False])
    config = ARSQConfig(levels=2, bins=3, hidden_dim=16, demo_penalty=1.0)

    def penalty_reported(mark: torch.Tensor | None) -> tuple[float, float]:
        torch.manual_seed(4)
        trainer = ARSQTrainer(4, 2, np.zeros(4, np.float32), np.ones(4, np.float32), config, torch.device("cpu"))
        indices = discretize(batch["actions"], 2, 3)
        with torch.no_grad():
            per_sample = sum(
                demo_penalty(net.q_and_soft_advantages(batch["observations"], indices)[1], indices, 1.0)
                for net in (trainer.q1, trainer.q2)
            )
        marked = batch if mark is None else {**batch, "from_dataset": mark}
        info = trainer.update(marked)
        expected = per_sample.mean() if mark is None else per_sample[mark].mean()
        return info.get("demo_penalty", 0.0), float(expected) if mark is None or mark.any() else 0.0

    reported, expected = penalty_reported(from_dataset)
    assert reported == pytest.approx(expected, rel=1e-5)
    unmarked, unmarked_expected = penalty_reported(None)  # offline batches: every row is a demonstration
    assert unmarked == pytest.approx(unmarked_expected, rel=1e-5) and unmarked != pytest.approx(reported)
    assert penalty_reported(torch.zeros(8, dtype=torch.bool)) == (0.0, 0.0)  # online rows only: no penalty


def test_twin_acting_takes_the_minimum_of_both_networks_soft_advantages():
    torch.manual_seed(2)
    make = lambda: AutoRegressiveSoftQ(obs_dim=3, act_dim=1, levels=1, bins=4, hidden_dim=8, alpha=0.1)  # noqa: E731
    first, second = make(), make()
    obs = torch.randn(16, 3)
    inputs = torch.cat([obs, torch.zeros(16, 1), torch.ones(16, 1), torch.ones(16, 1)], -1)
    both = torch.minimum(
        first.soft_advantages(first.advantage(inputs)), second.soft_advantages(second.advantage(inputs))
    )
    chosen = first.select(obs, sample=False, twin=second)
    assert torch.equal(chosen[:, 0, 0], both.argmax(-1))
