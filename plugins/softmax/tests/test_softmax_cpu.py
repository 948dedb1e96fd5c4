"""The CPU softmax algorithms: correct on irregular shapes and fresh wide-range data, and the protocol's gates."""

from __future__ import annotations

import pytest
import torch
from harness_softmax import cpu, cpu_run, protocol
from harness_softmax.workload import SoftmaxWorkload, make_rows, make_vector

from harness import CellContext

ALGORITHMS = ["three-pass-recompute", "three-pass-reload", "two-pass", "online", "fused"]
DTYPES = ["float32", "float16", "bfloat16"]
# Irregular shapes: many short rows, a few long rows cut into column blocks, one long vector, a tiny batch.
SHAPES = [(1823, 781), (3, 70001), (1, 100003), (7, 5)]
BLOCK = 1 << 14  # small blocks, so every shape spans several blocks and the combining code runs


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a loaded 2-core CI machine, OpenMP's barriers make each small op wait for a
    descheduled sibling thread, and a test of many small ops slows down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def context(tmp_path, seed: int = 0, **budget) -> CellContext:
    return CellContext(seed=seed, budget=budget, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cpu_algorithm_matches_float64_reference(algorithm, dtype):
    kernel, _ = cpu.KERNELS[algorithm]
    for seed, (rows, cols) in enumerate(SHAPES):
        if algorithm == "fused" and cols > BLOCK:
            continue
        workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=100 + seed)
        out = workload.output(0)
        protocol.poison(out, dtype)
        kernel(workload.input(0), out, BLOCK)
        assert protocol.count_unwritten(out, dtype) == (0, None)
        error, _ = protocol.max_relative_error(out, workload.reference(0), dtype)
        assert error <= protocol.DEFAULT_TOLERANCE[dtype], (algorithm, dtype, rows, cols, error)
        # Rows sum to one: the normalisation really happened (within the storage type's rounding).
        sums = out.double().sum(dim=-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=cols * protocol.DEFAULT_TOLERANCE[dtype])


@pytest.mark.parametrize("baseline", ["torch", "scipy"])
def test_baselines_match_float64_reference(baseline):
    kernel, passes = cpu.KERNELS[baseline]
    assert passes is None  # the library's passes are not counted
    workload = SoftmaxWorkload(1823, 781, "float32", -1000.0, 1000.0, seed=3)
    out = workload.output(0)
    kernel(workload.input(0), out, 0)
    error, _ = protocol.max_relative_error(out, workload.reference(0), "float32")
    assert error <= protocol.DEFAULT_TOLERANCE["float32"]


def test_scipy_refuses_bfloat16_with_reason():
    workload = SoftmaxWorkload(4, 8, "bfloat16", -1.0, 1.0, seed=0)
    with pytest.raises(TypeError, match="numpy has no bfloat16"):
        cpu.scipy_softmax(workload.input(0), workload.output(0))


def test_two_pass_needs_no_max_even_where_exp_overflows_float32():
    # exp(1000) overflows float32 (and float64); only the (mantissa, exponent) sum survives without a max pass.
    workload = SoftmaxWorkload(5, 3001, "float32", 900.0, 1000.0, seed=4)
    out = workload.output(0)
    cpu.two_pass(workload.input(0), out, 1024)
    error, _ = protocol.max_relative_error(out, workload.reference(0), "float32")
    assert error <= protocol.DEFAULT_TOLERANCE["float32"]


def test_row_blocks_cover_every_element_exactly_once():
    for rows, cols, block in [(1823, 781, 4096), (3, 70001, 4096), (1, 100003, 65536), (7, 5, 3), (2, 9, 9)]:
        covered = torch.zeros((rows, cols), dtype=torch.int32)
        for rs, cs in cpu.row_blocks(rows, cols, block):
            assert covered[rs, cs].numel() <= max(block, cols)
            covered[rs, cs] += 1
        assert bool((covered == 1).all()), (rows, cols, block)


def test_fused_cpu_refuses_rows_longer_than_a_block():
    workload = SoftmaxWorkload(2, 5000, "float32", -1.0, 1.0, seed=0)
    with pytest.raises(ValueError, match="softmax-online-cpu"):
        cpu.fused_rows(workload.input(0), workload.output(0), 4096)


def _broken_leaves_last_element(x, out, block_elements):
    """A kernel with an off-by-one: everything right except the last element of the last row."""
    full = torch.softmax(x.float(), dim=-1).to(out.dtype)
    out.reshape(-1)[:-1] = full.reshape(-1)[:-1]


def _broken_off_by_a_little(x, out, block_elements):
    """A kernel whose results are 1e-4 too large: the rows sum to 1.0001."""
    out.copy_(torch.softmax(x.float(), dim=-1) * 1.0001)


def test_poison_catches_an_unwritten_element_and_the_cell_is_not_timed(tmp_path):
    workload = make_rows(
        params={"rows": 37, "cols": 129, "dtype": "float32", "low": -1000.0, "high": 1000.0, "buffers": 1},
        context=context(tmp_path),
    )
    with pytest.raises(protocol.SoftmaxCorrectnessError, match=r"1 of 4773 .* unwritten .* row 36, column 128"):
        cpu_run.run_kernel("broken", _broken_leaves_last_element, (1, 1), workload, {}, context(tmp_path))


@pytest.mark.parametrize("dtype", DTYPES)
def test_poison_is_a_nan_no_arithmetic_produces(dtype):
    out = torch.empty(4, 4, dtype=getattr(torch, dtype))
    protocol.poison(out, dtype)
    assert bool(torch.isnan(out).all())
    assert protocol.count_unwritten(out, dtype) == (16, 0)
    out[0, 1] = float("nan")  # a computed NaN is not mistaken for an unwritten element (but fails the error)
    assert protocol.count_unwritten(out, dtype) == (15, 0)
    error, index = protocol.max_relative_error(out, torch.full((4, 4), 0.25, dtype=torch.float64), dtype)
    assert error == float("inf") and index == 0


def test_error_over_tolerance_fails_the_cell(tmp_path):
    workload = SoftmaxWorkload(64, 100, "float32", -1000.0, 1000.0, seed=0, buffers=1)
    with pytest.raises(
        protocol.SoftmaxCorrectnessError, match=r"max relative error 0.0001 exceeds the float32 tolerance 1e-05"
    ):
        cpu_run.run_kernel("sloppy", _broken_off_by_a_little, (1, 1), workload, {}, context(tmp_path))
    # The same kernel passes where the caller allows that much error: the gate is the tolerance, nothing else.
    outcome = cpu_run.run_kernel(
        "sloppy",
        _broken_off_by_a_little,
        (1, 1),
        workload,
        {"tolerance": 2e-4},
        context(tmp_path, repeats=2, copy_mb=8),
    )
    assert outcome["max_rel_error"] == pytest.approx(1e-4, rel=0.05)


def test_float32_tolerance_grows_with_the_square_root_of_long_rows_only():
    assert protocol.tolerance_for("float32", 0.0, 781) == 1e-5
    assert protocol.tolerance_for("float32", 0.0, 10**6) == 1e-5
    assert protocol.tolerance_for("float32", 0.0, 10**8) == pytest.approx(1e-4)
    assert protocol.tolerance_for("bfloat16", 0.0, 10**8) == 1.6e-2
    assert protocol.tolerance_for("float32", 3e-3, 10**8) == 3e-3  # an explicit tolerance wins


def test_relative_error_floors_the_denominator_at_the_smallest_normal():
    reference = torch.tensor([[1e-300, 0.5, 0.5]], dtype=torch.float64)
    output = torch.tensor([[0.0, 0.5, 0.5]], dtype=torch.float32)  # underflow to 0 is correct in float32
    error, _ = protocol.max_relative_error(output, reference, "float32")
    assert error < 1e-200
    # Flush-to-zero (CuPy compiles kernels with -ftz=true): a subnormal result written as 0 is exact ...
    flushed, _ = protocol.max_relative_error(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[1e-39, 1.0]], dtype=torch.float64), "float32"
    )
    assert flushed == 0.0
    # ... but a wrong subnormal, or a 0 where the reference is a normal number, is not.
    wrong, _ = protocol.max_relative_error(
        torch.tensor([[5e-39, 0.0]]), torch.tensor([[1e-39, 2e-38]], dtype=torch.float64), "float32"
    )
    assert wrong == pytest.approx(1.0)


def test_cpu_run_outcome_is_consistent(tmp_path):
    workload = make_vector(
        params={"n": 30011, "dtype": "bfloat16", "low": -1000.0, "high": 1000.0, "buffers": 3},
        context=context(tmp_path, seed=5),
    )
    torch.set_num_threads(2)  # differs from the cell's threads=1 (the autouse fixture restores it afterwards)
    threads_before = torch.get_num_threads()
    outcome = cpu_run.run_online(
        environment=workload,
        params={"tolerance": 0.0, "threads": 1, "block_elements": 4096},
        context=context(tmp_path, seed=5, warmup=1, repeats=4, copy_mb=8),
    )
    assert outcome["algorithm"] == "softmax-online-cpu" and outcome["device"] == "cpu"
    assert outcome["threads"] == 1 and outcome["buffers"] == 3
    assert (
        torch.get_num_threads() == threads_before
    )  # the cell's thread setting does not leak into the next and outcome["repeats"] == 4
    assert (outcome["passes_read"], outcome["passes_written"]) == (2, 1)
    assert outcome["min_traffic_bytes"] == 2 * 30011 * 2
    assert outcome["gbps_actual_passes"] == pytest.approx(1.5 * outcome["gbps_min_traffic"])
    assert outcome["fraction_of_ceiling"] == pytest.approx(
        outcome["gbps_min_traffic"] / outcome["bandwidth_ceiling_gbps"]
    )
    assert outcome["speedup_vs_torch"] == pytest.approx(outcome["torch_time_s"] / outcome["time_s"])
    assert 0 < outcome["max_rel_error"] <= outcome["tolerance"] == protocol.DEFAULT_TOLERANCE["bfloat16"]
    assert outcome["time_s_min"] <= outcome["time_s"] <= outcome["time_s_p90"]
    assert outcome["bandwidth_ceiling_gbps"] > 0


def test_workload_inputs_are_seeded_fresh_and_in_range(tmp_path):
    a = SoftmaxWorkload(50, 70, "float32", -1000.0, 1000.0, seed=7)
    b = SoftmaxWorkload(50, 70, "float32", -1000.0, 1000.0, seed=7)
    c = SoftmaxWorkload(50, 70, "float32", -1000.0, 1000.0, seed=8)
    assert torch.equal(a.input(0), b.input(0))
    assert not torch.equal(a.input(0), a.input(1))  # each rotated buffer holds different data
    assert not torch.equal(a.input(0), c.input(0))
    values = a.input(1)
    assert float(values.min()) >= -1000.0 and float(values.max()) <= 1000.0
    assert float(values.max()) > 900.0 and float(values.min()) < -900.0  # the whole range, not a corner of it
    assert a.input(0).dtype == torch.float32


def test_rotation_exceeds_twice_the_cache_within_limits():
    small = SoftmaxWorkload(256, 256, "float32", -1.0, 1.0, seed=0)  # 256 KiB in, 256 KiB out
    assert small.rotation_count(cache_bytes=1 << 20) == 4
    assert small.rotation_count(cache_bytes=1 << 30) == 16  # capped
    huge = SoftmaxWorkload(1, 10**8, "float32", -1.0, 1.0, seed=0)
    assert huge.rotation_count(cache_bytes=32 << 20) == 1
    assert SoftmaxWorkload(256, 256, "float32", -1.0, 1.0, seed=0, buffers=3).rotation_count(1 << 30) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows >= 1"),
        ({"dtype": "float64"}, "not one of"),
        ({"low": 1.0, "high": 1.0}, "low < high"),
        ({"buffers": -1}, "buffers must be >= 0"),
    ],
)
def test_workload_refuses_bad_parameters_with_reason(kwargs, message):
    values = {"rows": 2, "cols": 3, "dtype": "float32", "low": -1.0, "high": 1.0, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        SoftmaxWorkload(**values)
