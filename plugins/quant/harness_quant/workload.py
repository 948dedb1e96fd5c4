"""The ``quantization`` task kind: what every environment of this suite hands to every quantizer.

An environment's ``make`` returns a :class:`QuantWorkload`: a trained full-precision model (never modified;
quantizers work on a deep copy), the data to calibrate and to fine-tune it, and an ``evaluate`` function
whose primary value is named by ``quality_name``. Model and data live on ``device``, the cell's
``context.device``: the full-precision model is trained (and cached) on the CPU, so every device starts from
the same weights, and then moved. Third-party quantizers and environments only need this
shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import CellContext

TASK_KIND = "quantization"


@dataclass
class QuantWorkload:
    """A full-precision model with its data and evaluation (the ``quantization`` task kind)."""

    name: str
    # The trained full-precision reference; quantizers must deep-copy it before changing anything.
    model: nn.Module
    # Key of evaluate()'s result that is the headline quality ("accuracy", "perplexity", "embedding_cosine").
    quality_name: str
    # True for accuracy and fidelity, False for perplexity.
    higher_is_better: bool
    # evaluate(model) -> {quality_name: value, ...}: every number the environment reports for a model.
    evaluate: Callable[[nn.Module], dict[str, float]]
    # evaluate(self.model), computed once in make().
    fp_metrics: dict[str, float]
    # A fresh training batch (for QAT) drawn with the given generator.
    train_batch: Callable[[np.random.Generator], Any]
    # loss(model, batch) -> scalar tensor: the objective QAT minimises (the FP training loss, or distillation).
    loss: Callable[[nn.Module, Any], torch.Tensor]
    # Batches of model inputs for post-training calibration (GPTQ Hessians), fixed per seed.
    calibration_batches: list[Any]
    # forward(model, batch) runs the model on one calibration batch (the output is ignored).
    forward: Callable[[nn.Module, Any], Any]
    # Names of the Linear/Conv2d submodules that quantizers replace (embeddings and LM heads stay in FP).
    quantizable: list[str]
    # The environment's resolved parameters (for records and cache keys).
    config: dict[str, Any] = field(default_factory=dict)
    # Where the model and every batch live: the cell's context.device ("cpu" or "cuda"). Quantizers put what
    # they add (quantized layers, learned step sizes) there too.
    device: str = "cpu"

    @property
    def fp_quality(self) -> float:
        return float(self.fp_metrics[self.quality_name])

    def gap_to_fp(self, quality: float) -> float:
        """Quality lost relative to full precision, as a fraction of it (positive: worse than FP)."""
        fp = self.fp_quality
        lost = fp - quality if self.higher_is_better else quality - fp
        return lost / abs(fp)


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config, for cache file names."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_state_dict(
    cache_dir: Path,
    name: str,
    config: Mapping[str, Any],
    train: Callable[[], nn.Module],
    context: CellContext | None = None,
) -> tuple[dict[str, torch.Tensor], bool]:
    """Load the model state cached for ``config``, or call ``train()`` and cache its state.

    Returns (state_dict, was_cached). The file is written to a temporary name and renamed, so concurrent
    cells training the same model never read a half-written file.
    """
    folder = Path(cache_dir) / "quant"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{config_hash(config)}.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True), True
    shared_setup = getattr(context, "shared_setup", None)
    # Every quantizer of the seed reuses this model: its training is shared setup, not the first cell's time.
    with shared_setup(f"training the {name} model (shared cache)") if shared_setup else contextlib.nullcontext():
        model = train()
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, temporary)
    os.replace(temporary, path)
    (folder / f"{name}-{config_hash(config)}.json").write_text(json.dumps(dict(config), indent=1, default=str))
    return state, False


def quantization_outcome(
    workload: QuantWorkload, model: nn.Module, quantize_time_s: float, **extra: Any
) -> dict[str, Any]:
    """Evaluate a quantized model and return the raw outcome every quantizer of this suite reports.

    Keys: every value of ``workload.evaluate`` (``accuracy``, ``perplexity``, ``embedding_cosine`` ...),
    ``quality``/``quality_name``, ``fp_quality``, ``gap_to_fp``, ``effective_bits`` (per quantized weight,
    scales and zero points included), ``model_size_mb`` (whole model) and ``quantize_time_s``.
    """
    from harness_quant.layers import model_size_bits

    metrics = workload.evaluate(model)
    quality = float(metrics[workload.quality_name])
    total_bits, bits_per_weight = model_size_bits(model)
    return {
        **metrics,
        "quality_name": workload.quality_name,
        "quality": quality,
        "fp_quality": workload.fp_quality,
        "gap_to_fp": workload.gap_to_fp(quality),
        "effective_bits": bits_per_weight,
        "model_size_mb": total_bits / 8 / 1e6,
        "quantize_time_s": quantize_time_s,
        **extra,
    }
