"""The GPU softmax algorithms: launch planning everywhere; correctness and the protocol where a GPU is present."""

from __future__ import annotations

import pytest
from harness_softmax import gpu, protocol
from harness_softmax.availability import cupy_unavailable_reason
from harness_softmax.workload import SoftmaxWorkload

from harness import CellContext

H100_SMS = 132


@pytest.mark.parametrize(
    ("rows", "cols"), [(4096, 1024), (1823, 781), (1, 10**8), (256, 262144), (1, 10**4), (3, 5), (1, 1)]
)
def test_chunk_plan_covers_each_row_with_nonempty_chunks(rows, cols):
    plan = gpu.plan_chunks(rows, cols, H100_SMS)
    assert plan.chunks * plan.chunk_cols >= cols > (plan.chunks - 1) * plan.chunk_cols  # no empty chunk
    assert plan.grid == (rows, plan.chunks)
    if rows >= H100_SMS * gpu.BLOCKS_PER_SM:
        assert plan.chunks == 1  # enough rows to fill the GPU: one block per row, no partials to combine
    if rows == 1 and cols == 10**8:
        assert plan.chunks == H100_SMS * gpu.BLOCKS_PER_SM  # a long vector fills every SM


@pytest.mark.parametrize("cols", [1, 5, 781, 1024, 2048, 2049, 4096, 16384, 16385, 32768])
def test_fused_launch_holds_the_row_with_the_fewest_items(cols):
    items, threads = gpu.fused_launch(cols)
    assert items in gpu.FUSED_ITEMS
    assert threads % 32 == 0 and 32 <= threads <= 1024
    assert threads * items >= cols  # the whole row fits
    smaller = [n for n in gpu.FUSED_ITEMS if n < items]
    assert all(-(-cols // n) > gpu.FUSED_THREADS_TARGET for n in smaller)  # no fewer items would do


def test_fused_gpu_refuses_rows_longer_than_its_registers():
    with pytest.raises(ValueError, match="softmax-online-gpu"):
        gpu.fused_launch(32769)


def test_fused_instantiations_match_the_launcher():
    source = (gpu.KERNEL_DIR / "fused.cu").read_text()
    for items in gpu.FUSED_ITEMS:
        assert f"FUSED_INSTANTIATE(D, SUFFIX, {items})" in source


# --- on a GPU ----------------------------------------------------------------------------------------------

_REASON = cupy_unavailable_reason()
needs_gpu = pytest.mark.skipif(_REASON is not None, reason=f"GPU tests need CuPy and a CUDA device: {_REASON}")

BUILDERS = {
    "three-pass-recompute": gpu.build_three_pass_recompute,
    "three-pass-reload": gpu.build_three_pass_reload,
    "two-pass": gpu.build_two_pass,
    "online": gpu.build_online,
    "fused": gpu.build_fused,
}
# Irregular shapes: short rows (one block each), rows cut into chunks, long vectors, odd tails.
SHAPES = [(1823, 781), (64, 32768), (3, 70001), (1, 1_000_003), (7, 5), (1, 1)]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("algorithm", list(BUILDERS))
def test_gpu_algorithm_matches_float64_reference(algorithm, dtype):
    import cupy

    multiprocessors = cupy.cuda.Device().attributes["MultiProcessorCount"]
    for seed, (rows, cols) in enumerate(SHAPES):
        if algorithm == "fused" and cols > gpu.FUSED_MAX_COLS:
            continue
        workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=200 + seed)
        launch = BUILDERS[algorithm](workload, gpu.plan_chunks(rows, cols, multiprocessors))
        ((source, target),) = gpu.device_pairs(workload, 1)
        poisoned = workload.output(0)
        protocol.poison(poisoned, dtype)
        target.set(gpu.host_bits(poisoned))
        launch(source, target)
        output = gpu.to_host(target, dtype)
        assert protocol.count_unwritten(output, dtype) == (0, None), (algorithm, rows, cols)
        error, _ = protocol.max_relative_error(output, workload.reference(0), dtype)
        assert error <= protocol.DEFAULT_TOLERANCE[dtype], (algorithm, dtype, rows, cols, error)


@pytest.mark.gpu
@needs_gpu
def test_gpu_run_outcome_is_consistent(tmp_path):
    workload = SoftmaxWorkload(1823, 781, "bfloat16", -1000.0, 1000.0, seed=1)
    context = CellContext(
        seed=1, budget={"warmup": 2, "repeats": 10, "copy_mb": 256}, checkpoint_dir=tmp_path, cache_dir=tmp_path
    )
    outcome = gpu.run_fused(environment=workload, params={"tolerance": 0.0}, context=context)
    assert outcome["device"] == "cuda" and outcome["device_name"]
    assert (outcome["passes_read"], outcome["passes_written"]) == (1, 1)
    assert outcome["gbps_actual_passes"] == pytest.approx(outcome["gbps_min_traffic"])
    assert 0 < outcome["fraction_of_ceiling"] < 1.5
    assert outcome["bandwidth_ceiling_gbps"] > 100  # any datacenter GPU copies faster than this
    assert outcome["max_rel_error"] <= protocol.DEFAULT_TOLERANCE["bfloat16"]
    if outcome["torch_time_s"] is not None:
        assert outcome["speedup_vs_torch"] == pytest.approx(outcome["torch_time_s"] / outcome["time_s"])
