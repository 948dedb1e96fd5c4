"""Auto-Regressive Soft Q-learning (ARSQ) over coarse-to-fine discretized continuous actions.

Paper: Liu, Gao, Liao, Yu & Wang, "Learning from Suboptimal Data in Continuous Control via Auto-Regressive Soft
Q-Network", 2025, https://arxiv.org/abs/2502.00288. Discretization: Seo et al., "Continuous Control with
Coarse-to-fine Reinforcement Learning" (CQN), https://arxiv.org/abs/2407.07787: each action dimension is
chosen in ``levels`` steps, each picking one of ``bins`` sub-intervals of the interval chosen so far (3 levels
of 5 bins: 125 values per dimension, resolution 2/125).

The Q-function is decomposed auto-regressively, levels outer and dimensions inner::

    Q(s, a) = V(s) + sum_{l, d} [ A_{l,d}(s, a_<(l,d))[a_{l,d}] - alpha * logsumexp(A_{l,d}(s, a_<(l,d)) / alpha) ]

where A_{l,d} are the ``bins`` advantage logits predicted from the observation and the partial action chosen
so far (every dimension's current interval center, plus which level and dimension is being decided). Each
bracket is ``alpha * log pi_{l,d}(a_{l,d} | s, a_<(l,d))`` for the softmax policy pi = softmax(A / alpha), so
the soft value identity ``alpha * logsumexp_a Q(s, a) / alpha = V(s)`` holds by construction and the soft
Bellman target needs only V(s'): ``Q(s, a) <- r + gamma * min(V1'(s'), V2'(s'))`` with twin target networks.
Training regresses Q on dataset (and online) actions only, so no unseen action is ever bootstrapped from.

Checked against the paper's published code (the official "Auto-Regressive Soft Q (ARSQ)" repository, its D4RL
part: ``arsq_d4rl/alg/sqar.py`` and ``arsq_d4rl/run/sqar_run.py``; its hydra config files, which hold most values,
and the paper's appendix table were not reachable here). Confirmed from that code, and the defaults here:

* the decomposition above, twin networks and the target ``r + gamma * min(V1'(s'), V2'(s'))`` on dataset actions;
* the advantage network's input: the observation and every dimension's current interval center;
* the networks: three hidden layers of 512 tanh units, orthogonal initialization (gain sqrt 2, output gain 0.01)
  (``FCNetNaive``, hard-coded there);
* acting on the minimum of both networks' soft advantages (greedy for evaluation, sampled for exploration);
* a CQL-style penalty on demonstration samples (``demo_penalty`` below): per (level, dimension), the
  temperature-logsumexp of the *other* bins' soft advantages minus the chosen bin's, summed over positions,
  averaged over demonstration samples, times a weight.

Not confirmed (values live in the unreachable config files): levels 3 and bins 5 (CQN's defaults, assumed
here), the temperature alpha (the code has separate training and acting temperatures), the
penalty's weight and temperature, learning rates (the code has separate value and advantage rates), batch size,
Polyak factor. Known differences: the published advantage network tells positions apart by output heads (one
output of ``bins`` per position), here by one-hot level and dimension inputs; the published runner takes its
demonstrations as a return-percentile slice of the dataset, mixed into each batch at a fixed ratio, and relabels
good online episodes as demonstrations; here every dataset transition is a demonstration (offline-to-online the
batch marks them, ``from_dataset``, and the penalty averages over them only; online samples get the Bellman loss
alone). A pilot that applied the penalty to online samples too (benchmarks/RESULTS.md, issue 17) saw
offline-to-online ARSQ collapse onto its own early actions on 3 of 3 seeds.
Protocols: ``offline`` and ``offline-to-online`` (the paper's: demonstrations mixed into online training,
exploration by sampling the softmax policy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness import CellContext
from harness_rl.data import normalization, offline_transitions
from harness_rl.hyperparameters import Protocol, config_from_params
from harness_rl.networks import adam, seed_everything, soft_update
from harness_rl.training import run_protocol, with_torch_threads


@dataclass
class ARSQConfig:
    protocol: Protocol = "offline"  # offline (budget gradient_steps) or offline-to-online (budget env_steps)
    levels: int = 3  # coarse-to-fine levels per action dimension (CQN's; ARSQ's D4RL value unconfirmed)
    bins: int = 5  # sub-intervals per level (CQN's; ARSQ's D4RL value unconfirmed)
    alpha: float = 0.01  # soft-Q temperature of the advantage softmax (unconfirmed; published code: soft_alpha)
    demo_penalty: float = 1.0  # weight of the CQL-style penalty on dataset actions (cql_min_q_weight; unconfirmed)
    demo_penalty_temperature: float = 1.0  # its logsumexp temperature over other bins (published cql_temp; unconfirmed)
    twin_act: bool = True  # act on the minimum of both networks' soft advantages (published code's infer)
    batch_size: int = 256  # transitions per gradient step (unconfirmed)
    discount: float = 0.99  # discount factor gamma
    tau: float = 0.005  # Polyak factor of the target networks (unconfirmed)
    learning_rate: float = 3e-4  # Adam learning rate of both networks (unconfirmed; published: vf_lr and qf_lr)
    hidden_dim: int = 512  # width of the hidden layers of value and advantage networks (published code: 512)
    hidden_layers: int = 3  # hidden layers of value and advantage networks (published code: 3)
    activation: Literal["tanh", "relu"] = "tanh"  # hidden-layer activation (published code: tanh)
    orthogonal_init: bool = True  # orthogonal weights (gain sqrt 2, output 0.01), zero biases (published code)
    normalize: bool = True  # standardize observations with the dataset's mean and std


def network(
    inputs: int, outputs: int, hidden_dim: int, layers: int = 2, activation: str = "relu", orthogonal: bool = False
) -> nn.Sequential:
    """An MLP of ``layers`` hidden layers; ``orthogonal``: the published ARSQ code's initialization."""
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden_dim), act()]
        width = hidden_dim
    modules.append(nn.Linear(width, outputs))
    if orthogonal:
        for module in modules:
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, gain=0.01 if module is modules[-1] else float(np.sqrt(2)))
                nn.init.zeros_(module.bias)
    return nn.Sequential(*modules)


def demo_penalty(soft: torch.Tensor, indices: torch.Tensor, temperature: float) -> torch.Tensor:
    """The published code's CQL-style penalty per sample, shape (N,): over every (level, dimension),
    ``temperature * logsumexp(other bins' soft advantages / temperature) - chosen bin's soft advantage``, summed.

    ``soft``: soft advantages (N, L, D, bins); ``indices``: the dataset action's bins (N, L, D). Minimizing it
    raises the dataset action's advantage over the others (a behaviour-cloning-like pull on demonstrations)."""
    chosen = soft.gather(-1, indices.unsqueeze(-1)).squeeze(-1)
    others = soft.masked_fill(F.one_hot(indices, soft.shape[-1]).bool(), float("-inf"))
    ood = temperature * torch.logsumexp(others / temperature, -1)
    return (ood - chosen).sum((1, 2))


def discretize(actions: torch.Tensor, levels: int, bins: int) -> torch.Tensor:
    """Continuous actions (N, D) in [-1, 1] -> coarse-to-fine bin indices (N, levels, D)."""
    low = torch.full_like(actions, -1.0)
    width = torch.full_like(actions, 2.0)
    indices = []
    for _ in range(levels):
        width = width / bins
        index = torch.floor((actions - low) / width).clamp(0, bins - 1)
        low = low + index * width
        indices.append(index.long())
    return torch.stack(indices, 1)


def interval_centers(indices: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin indices (N, L, D) -> centers of the chosen interval before any and after each level (N, L+1, D).

    ``[:, -1]`` is the continuous action the indices stand for."""
    low = torch.full(indices[:, 0].shape, -1.0, device=indices.device)
    width = torch.full_like(low, 2.0)
    centers = [low + width / 2]
    for level in range(indices.shape[1]):
        width = width / bins
        low = low + indices[:, level].float() * width
        centers.append(low + width / 2)
    return torch.stack(centers, 1)


def undiscretize(indices: torch.Tensor, bins: int) -> torch.Tensor:
    return interval_centers(indices, bins)[:, -1]


class AutoRegressiveSoftQ(nn.Module):
    """V(s) and the per-(level, dimension) advantage logits A(s, partial action)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        levels: int,
        bins: int,
        hidden_dim: int,
        alpha: float,
        hidden_layers: int = 2,
        activation: str = "relu",
        orthogonal_init: bool = False,
    ) -> None:
        super().__init__()
        self.act_dim, self.levels, self.bins, self.alpha = act_dim, levels, bins, alpha
        shape = {"hidden_dim": hidden_dim, "layers": hidden_layers, "activation": activation}
        self.value = network(obs_dim, 1, **shape, orthogonal=orthogonal_init)
        # Input: observation, every dimension's current interval center, one-hot level, one-hot dimension.
        self.advantage = network(obs_dim + act_dim + levels + act_dim, bins, **shape, orthogonal=orthogonal_init)
        self.register_buffer("level_onehot", torch.eye(levels))
        self.register_buffer("dim_onehot", torch.eye(act_dim))
        # decided_before[d, d'] is True when dimension d' is decided before d within one level.
        self.register_buffer("decided_before", torch.ones(act_dim, act_dim).tril(-1).bool())

    def soft_advantages(self, logits: torch.Tensor) -> torch.Tensor:
        """A - alpha * logsumexp(A / alpha) = alpha * log softmax(A / alpha)."""
        return logits - self.alpha * torch.logsumexp(logits / self.alpha, -1, keepdim=True)

    def teacher_forced_logits(self, obs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Advantage logits (N, L, D, bins) at every position, conditioned on the given action's prefix."""
        n, levels, dims = indices.shape
        centers = interval_centers(indices, self.bins)  # (N, L+1, D)
        # At (l, d): dimensions before d already refined at level l, the others still at level l - 1.
        partial = torch.where(self.decided_before, centers[:, 1:, None, :], centers[:, :-1, None, :])
        inputs = torch.cat(
            [
                obs[:, None, None, :].expand(n, levels, dims, -1),
                partial,
                self.level_onehot[None, :, None, :].expand(n, levels, dims, levels),
                self.dim_onehot[None, None, :, :].expand(n, levels, dims, dims),
            ],
            -1,
        )
        return self.advantage(inputs)

    def q_value(self, obs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for discretized actions, shape (N,)."""
        return self.q_and_soft_advantages(obs, indices)[0]

    def q_and_soft_advantages(self, obs: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q(s, a) (N,) and the soft advantages of every bin at every position (N, L, D, bins)."""
        soft = self.soft_advantages(self.teacher_forced_logits(obs, indices))
        chosen = soft.gather(-1, indices.unsqueeze(-1)).squeeze(-1)
        return self.value(obs).squeeze(-1) + chosen.sum((1, 2)), soft

    @torch.no_grad()
    def select(self, obs: torch.Tensor, sample: bool, twin: AutoRegressiveSoftQ | None = None) -> torch.Tensor:
        """Choose bin indices (N, L, D) position by position: greedy, or sampled from softmax(A / alpha).

        With ``twin``, on the minimum of both networks' soft advantages (the published code's acting rule)."""
        n = obs.shape[0]
        indices = torch.zeros(n, self.levels, self.act_dim, dtype=torch.long, device=obs.device)
        low = torch.full((n, self.act_dim), -1.0, device=obs.device)
        width = torch.full_like(low, 2.0)
        centers = low + width / 2
        for level in range(self.levels):
            for dim in range(self.act_dim):
                inputs = torch.cat(
                    [
                        obs,
                        centers,
                        self.level_onehot[level].expand(n, -1),
                        self.dim_onehot[dim].expand(n, -1),
                    ],
                    -1,
                )
                logits = self.soft_advantages(self.advantage(inputs))
                if twin is not None:
                    logits = torch.minimum(logits, twin.soft_advantages(twin.advantage(inputs)))
                if sample:
                    choice = torch.distributions.Categorical(logits=logits / self.alpha).sample()
                else:
                    choice = logits.argmax(-1)
                indices[:, level, dim] = choice
                width[:, dim] = width[:, dim] / self.bins
                low[:, dim] = low[:, dim] + choice.float() * width[:, dim]
                centers[:, dim] = low[:, dim] + width[:, dim] / 2
        return indices


class ARSQTrainer:
    def __init__(self, obs_dim: int, act_dim: int, obs_mean, obs_std, config: ARSQConfig, device) -> None:
        self.config = config
        make = lambda: AutoRegressiveSoftQ(  # noqa: E731
            obs_dim,
            act_dim,
            config.levels,
            config.bins,
            config.hidden_dim,
            config.alpha,
            hidden_layers=config.hidden_layers,
            activation=config.activation,
            orthogonal_init=config.orthogonal_init,
        ).to(device)
        self.q1, self.q2 = make(), make()
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.optimizer = adam([*self.q1.parameters(), *self.q2.parameters()], lr=config.learning_rate)
        self.obs_mean = torch.as_tensor(obs_mean, device=device)
        self.obs_std = torch.as_tensor(obs_std, device=device)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        obs = (batch["observations"] - self.obs_mean) / self.obs_std
        next_obs = (batch["next_observations"] - self.obs_mean) / self.obs_std
        indices = discretize(batch["actions"], cfg.levels, cfg.bins)
        with torch.no_grad():
            next_v = torch.min(self.q1_target.value(next_obs), self.q2_target.value(next_obs)).squeeze(-1)
            target = batch["rewards"] + (1.0 - batch["terminals"]) * cfg.discount * next_v
        q1, soft1 = self.q1.q_and_soft_advantages(obs, indices)
        q2, soft2 = self.q2.q_and_soft_advantages(obs, indices)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        info = {}
        # The penalty is averaged over demonstration rows only: offline every row is one; offline-to-online
        # the batch marks the dataset's rows (``from_dataset``) and online samples are left out, as published.
        demo = batch.get("from_dataset")
        if cfg.demo_penalty > 0 and (demo is None or bool(demo.any())):
            per_sample = demo_penalty(soft1, indices, cfg.demo_penalty_temperature) + demo_penalty(
                soft2, indices, cfg.demo_penalty_temperature
            )
            penalty = per_sample.mean() if demo is None else per_sample[demo].mean()
            loss = loss + cfg.demo_penalty * penalty
            info["demo_penalty"] = penalty.item()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        soft_update(((self.q1, self.q1_target), (self.q2, self.q2_target)), cfg.tau)
        return {"q_loss": loss.item(), **info}

    def _act(self, obs: np.ndarray, sample: bool) -> np.ndarray:
        obs_t = torch.as_tensor(np.asarray(obs, np.float32), device=self.obs_mean.device)
        single = obs_t.ndim == 1
        obs_t = (obs_t[None] if single else obs_t) - self.obs_mean
        indices = self.q1.select(obs_t / self.obs_std, sample, self.q2 if self.config.twin_act else None)
        action = undiscretize(indices, self.config.bins).cpu().numpy()
        return action[0] if single else action

    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        return self._act(obs, sample=False)

    def explore_action(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._act(obs, sample=True)

    def state(self) -> dict[str, Any]:
        names = ("q1", "q2", "q1_target", "q2_target", "optimizer")
        return {n: getattr(self, n).state_dict() for n in names}

    def load(self, state: dict[str, Any]) -> None:
        for name in ("q1", "q2", "q1_target", "q2_target", "optimizer"):
            getattr(self, name).load_state_dict(state[name])


@with_torch_threads
def run(environment: Any, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    """Harness entry point; ``params["protocol"]`` is ``offline`` or ``offline-to-online``."""
    config = config_from_params(ARSQConfig, params)
    seed_everything(context.seed)
    data = offline_transitions(environment)
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    mean, std = normalization(data, config.normalize)
    trainer = ARSQTrainer(obs_dim, act_dim, mean, std, config, context.device)
    return run_protocol(
        trainer, data, environment, context, name="arsq", batch_size=config.batch_size, protocol=config.protocol
    )
