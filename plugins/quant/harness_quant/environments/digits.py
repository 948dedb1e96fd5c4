"""A small MLP and a small CNN trained on scikit-learn's bundled 8x8 digits (1,797 images, no download).

The split (75 % train, 25 % validation) and the initialisation follow the cell's seed; the trained
full-precision model is cached under ``context.cache_dir`` keyed by its config, so every quantizer of a seed
starts from the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import CellContext
from harness_quant.layers import quantizable_layer_names
from harness_quant.workload import QuantWorkload, cached_state_dict


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def _cnn(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * channels * 16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _load_digits(seed: int, validation_fraction: float) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_val = round(len(labels) * validation_fraction)
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]


def _make(architecture: str, params: dict[str, Any], context: CellContext) -> QuantWorkload:
    seed = int(context.seed)
    train_steps = int(context.budget_value("train_steps", params["train_steps"]))
    config = {"architecture": architecture, "seed": seed, **params, "train_steps": train_steps}
    x_train, y_train, x_val, y_val = _load_digits(seed, params["validation_fraction"])
    width = int(params["width"])

    def build() -> nn.Module:
        return _mlp(width) if architecture == "mlp" else _cnn(width)

    def train() -> nn.Module:
        torch.manual_seed(seed)
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
        rng = np.random.default_rng([seed, 1])
        for _ in range(train_steps):
            index = torch.from_numpy(rng.integers(0, len(y_train), params["batch_size"]))
            loss = F.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model

    state, _ = cached_state_dict(context.cache_dir, f"digits-{architecture}", config, train, context)
    model = build()
    model.load_state_dict(state)
    model.eval()
    # Trained on the CPU (the cache is shared by every device); evaluated and quantized on the cell's device.
    device = str(getattr(context, "device", "cpu"))
    model.to(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))

    @torch.no_grad()
    def evaluate(candidate: nn.Module) -> dict[str, float]:
        candidate.eval()
        predictions = candidate(x_val).argmax(dim=1)
        return {"accuracy": float((predictions == y_val).float().mean())}

    def train_batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(rng.integers(0, len(y_train), params["batch_size"])).to(device)
        return x_train[index], y_train[index]

    def loss(candidate: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(candidate(batch[0]), batch[1])

    calibration = [x_train[i : i + 256] for i in range(0, min(len(x_train), 1024), 256)]
    return QuantWorkload(
        name=f"digits-{architecture}",
        model=model,
        quality_name="accuracy",
        higher_is_better=True,
        evaluate=evaluate,
        fp_metrics=evaluate(model),
        train_batch=train_batch,
        loss=loss,
        calibration_batches=calibration,
        forward=lambda candidate, batch: candidate(batch),
        quantizable=quantizable_layer_names(model),
        config=config,
        device=device,
    )


def make_mlp(params: dict[str, Any], context: CellContext) -> QuantWorkload:
    """MLP 64-width-width-10 on the digits."""
    return _make("mlp", params, context)


def make_cnn(params: dict[str, Any], context: CellContext) -> QuantWorkload:
    """Two 3x3 convolutions (width, 2*width channels), max-pool, two linear layers, on the 8x8 digits."""
    return _make("cnn", params, context)
