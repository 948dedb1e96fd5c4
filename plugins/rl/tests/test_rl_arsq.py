"""ARSQ's discretization round-trips and its soft-advantage decomposition satisfies the soft-value identity."""

from __future__ import annotations

import itertools

import pytest
import torch
from harness_rl.arsq import AutoRegressiveSoftQ, discretize, interval_centers, undiscretize


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
