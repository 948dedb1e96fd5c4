"""A tiny decoder-only character-level transformer LM on the Python standard library's own documentation.

Text: ``pydoc_data/topics.py`` (several hundred KB of English reference text that ships with every CPython),
topics joined in sorted order. It is cut into chunks of ``chunk_chars`` characters and a seeded permutation
puts ``validation_fraction`` of the chunks in the validation set. Perplexity is computed as in GPTQ
(Frantar et al., 2022, ``datautils``/``eval``): the validation text is cut into non-overlapping windows of
``seq_len`` characters, every position predicts the next character inside its window, and perplexity is
``exp`` of the mean negative log-likelihood over all predicted characters (per character here).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import CellContext
from harness_quant.layers import quantizable_layer_names
from harness_quant.workload import QuantWorkload, cached_state_dict


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x GELU MLP, all projections nn.Linear."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, 4 * d_model)
        self.fc2 = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        heads = [t.reshape(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v)]
        attended = F.scaled_dot_product_attention(*heads, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class CharTransformer(nn.Module):
    """Token + learned position embeddings, ``n_layers`` blocks, final norm, linear head (logits)."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, seq_len: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def load_text() -> str:
    """The standard library's pydoc topics, joined in sorted order (deterministic across machines)."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def split_text(text: str, seed: int, chunk_chars: int, validation_fraction: float) -> tuple[str, str]:
    """Seeded split of the text into (train, validation) by whole chunks."""
    chunks = [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    order = np.random.default_rng(seed).permutation(len(chunks))
    n_val = max(1, round(len(chunks) * validation_fraction))
    validation = "".join(chunks[i] for i in sorted(order[:n_val]))
    train = "".join(chunks[i] for i in sorted(order[n_val:]))
    return train, validation


def lm_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy inside each window (positions 1..L-1 predicted from their prefix)."""
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


def make(params: dict[str, Any], context: CellContext) -> QuantWorkload:
    seed = int(context.seed)
    train_steps = int(context.budget_value("train_steps", params["train_steps"]))
    config = {"seed": seed, **params, "train_steps": train_steps}
    text = load_text()
    vocabulary = sorted(set(text))
    index_of = {char: i for i, char in enumerate(vocabulary)}
    train_text, validation_text = split_text(text, seed, params["chunk_chars"], params["validation_fraction"])
    train_tokens = torch.tensor([index_of[c] for c in train_text], dtype=torch.long)
    validation_tokens = torch.tensor([index_of[c] for c in validation_text], dtype=torch.long)
    seq_len, batch_size = int(params["seq_len"]), int(params["batch_size"])
    # Windows of seq_len + 1 characters: seq_len inputs, each predicting the next character.
    n_windows = min(len(validation_tokens) // (seq_len + 1), int(params["eval_windows"]))
    validation_windows = validation_tokens[: n_windows * (seq_len + 1)].reshape(n_windows, seq_len + 1)

    def build() -> nn.Module:
        return CharTransformer(len(vocabulary), params["d_model"], params["n_layers"], params["n_heads"], seq_len)

    def sample_windows(rng: np.random.Generator) -> torch.Tensor:
        starts = rng.integers(0, len(train_tokens) - seq_len - 1, batch_size)
        # One gather on the tokens' device (not one slice per window): rows starts[i] .. starts[i] + seq_len.
        offsets = torch.arange(seq_len + 1, device=train_tokens.device)
        return train_tokens[torch.as_tensor(starts, device=train_tokens.device)[:, None] + offsets]

    def train() -> nn.Module:
        torch.manual_seed(seed)
        model = build()
        optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=params["lr"], total_steps=max(train_steps, 2), pct_start=0.1
        )
        rng = np.random.default_rng([seed, 1])
        for step in range(train_steps):
            loss = lm_loss(model, sample_windows(rng))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            if step % 100 == 0:
                context.log("fp_train_loss", float(loss.detach()), step)
        return model

    state, _ = cached_state_dict(context.cache_dir, "char-lm", config, train, context)
    model = build()
    model.load_state_dict(state)
    model.eval()
    # Trained on the CPU (the cache is shared by every device); evaluated and quantized on the cell's device.
    device = str(getattr(context, "device", "cpu"))
    model.to(device)
    train_tokens, validation_windows = train_tokens.to(device), validation_windows.to(device)

    @torch.no_grad()
    def evaluate(candidate: nn.Module) -> dict[str, float]:
        candidate.eval()
        total_nll = 0.0
        for start in range(0, n_windows, 16):
            windows = validation_windows[start : start + 16]
            total_nll += float(lm_loss(candidate, windows)) * windows.shape[0]
        mean_nll = total_nll / n_windows
        return {"perplexity": math.exp(mean_nll), "validation_nll": mean_nll}

    calibration_rng = np.random.default_rng([seed, 2])
    calibration = [sample_windows(calibration_rng)[:, :-1] for _ in range(int(params["calibration_batches"]))]
    return QuantWorkload(
        name="char-lm",
        model=model,
        quality_name="perplexity",
        higher_is_better=False,
        evaluate=evaluate,
        fp_metrics=evaluate(model),
        train_batch=sample_windows,
        loss=lm_loss,
        calibration_batches=calibration,
        forward=lambda candidate, batch: candidate(batch),
        # Embeddings and the LM head stay in full precision, as in GPTQ and QuEST.
        quantizable=quantizable_layer_names(model, skip=("head",)),
        config=config,
        device=device,
    )
