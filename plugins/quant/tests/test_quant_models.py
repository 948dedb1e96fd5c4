"""Every quantizer on real (small) models: 8-bit is within 1 % of full precision, 1-bit QuEST trains stably.

The digits MLP is trained once per test session (a few seconds) into a temporary cache, exactly as the
harness would: through the environment's ``make`` with a ``CellContext``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from harness_quant.environments import minilm
from harness_quant.plugin import harness_algorithms, harness_environments

from harness import CellContext
from harness.specs import resolve_callable

ALGORITHMS = {spec.name: spec for spec in harness_algorithms()}
ENVIRONMENTS = {spec.name: spec for spec in harness_environments()}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads only add contention on a shared CPU
    yield
    torch.set_num_threads(previous)


def make(name: str, tmp_path, budget: dict, **overrides) -> tuple[object, CellContext]:
    context = CellContext(seed=0, budget=budget, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")
    spec = ENVIRONMENTS[name]
    return resolve_callable(spec.make)(params=spec.resolve_params(overrides), context=context), context


def run(name: str, environment, context: CellContext, **overrides) -> dict:
    spec = ALGORITHMS[name]
    return resolve_callable(spec.run)(environment=environment, params=spec.resolve_params(overrides), context=context)


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory):
    path = tmp_path_factory.mktemp("digits")
    return make("digits-mlp", path, {"train_steps": 400, "gradient_steps": 10}, width=48)


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("none", {}),
        ("rtn", {"weight_bits": 8, "act_bits": 8}),
        ("rtn", {"weight_bits": 8, "symmetric": False, "granularity": "group", "group_size": 16}),
        ("gptq", {"weight_bits": 8}),
        ("ste", {"weight_bits": 8, "act_bits": 8}),
        ("lsq", {"weight_bits": 8, "act_bits": 8}),
        ("quest", {"weight_bits": 8, "act_bits": 8}),
    ],
)
def test_every_quantizer_at_8_bits_is_within_1_percent_of_full_precision(digits_mlp, algorithm, params):
    environment, context = digits_mlp
    assert environment.fp_quality > 0.85  # the reference model really learned the task
    outcome = run(algorithm, environment, context, **params)
    assert outcome["fp_quality"] == environment.fp_quality
    assert outcome["gap_to_fp"] <= 0.01, outcome
    expected_bits = 32.0 if algorithm == "none" else 8.0
    assert expected_bits <= outcome["effective_bits"] <= expected_bits + 2.0  # + scales (group of 16: 2)
    if algorithm in ("ste", "lsq", "quest"):
        assert outcome["qat_steps"] == 10


def test_lower_bits_cost_accuracy_and_gptq_beats_rtn_at_2_bits(digits_mlp):
    environment, context = digits_mlp
    rtn2 = run("rtn", environment, context, weight_bits=2)
    gptq2 = run("gptq", environment, context, weight_bits=2)
    rtn8 = run("rtn", environment, context, weight_bits=8)
    assert rtn2["accuracy"] < rtn8["accuracy"]
    assert gptq2["accuracy"] > rtn2["accuracy"]
    assert rtn2["model_size_mb"] < rtn8["model_size_mb"]


def test_one_bit_quest_training_does_not_diverge(digits_mlp):
    environment, shared = digits_mlp
    context = dataclasses.replace(shared, budget={"gradient_steps": 80}, history=[])
    outcome = run("quest", environment, context, weight_bits=1, act_bits=1, lr=1e-3)
    losses = [value for name, _, value in context.history if name == "qat_loss"]
    assert all(math.isfinite(v) for v in losses) and len(losses) >= 4
    assert losses[-1] < losses[0]  # it learns at 1 bit instead of blowing up
    assert outcome["accuracy"] > 0.3  # far above chance (0.1) with 1-bit weights and activations
    assert 0.5 < outcome["quest_trusted_fraction"] <= 1.0
    assert outcome["effective_bits"] < 1.5


def test_cnn_and_char_lm_environments_quantize_and_cache_their_model(tmp_path):
    cnn, context = make("digits-cnn", tmp_path, {"train_steps": 60, "gradient_steps": 3}, width=4)
    assert [n for n in cnn.quantizable] == ["0", "2", "6", "8"]
    assert run("quest", cnn, context, weight_bits=4, act_bits=4)["accuracy"] > 0
    assert list((tmp_path / "cache" / "quant").glob("digits-cnn-*.pt"))
    tiny = {"d_model": 32, "n_layers": 1, "n_heads": 2, "seq_len": 32, "batch_size": 8, "eval_windows": 8}
    lm, context = make("char-lm", tmp_path, {"train_steps": 20, "gradient_steps": 2}, **tiny)
    assert "head" not in lm.quantizable and len(lm.quantizable) == 4
    for algorithm in ("gptq", "quest"):
        outcome = run(algorithm, lm, context, weight_bits=4)
        assert math.isfinite(outcome["perplexity"]) and outcome["perplexity"] > 1
    # A second make with the same config loads the cached model: identical FP quality.
    again, _ = make("char-lm", tmp_path, {"train_steps": 20}, **tiny)
    assert again.fp_quality == lm.fp_quality


@pytest.mark.skipif(minilm.unavailable_reason() is not None, reason=str(minilm.unavailable_reason()))
def test_minilm_rtn_8_bit_embeddings_stay_faithful_and_2_bit_do_not(tmp_path):
    environment, context = make("minilm-embeddings", tmp_path, {}, eval_sentences=32, calibration_batches=1)
    assert len(environment.quantizable) == 36
    assert environment.fp_metrics["embedding_cosine"] == pytest.approx(1.0, abs=1e-5)
    w8 = run("rtn", environment, context, weight_bits=8)
    assert w8["embedding_cosine"] > 0.995 and w8["embedding_spearman"] > 0.98
    w2 = run("rtn", environment, context, weight_bits=2)
    assert w2["embedding_cosine"] < w8["embedding_cosine"] - 0.05
