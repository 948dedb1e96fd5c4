"""The compiled CPU softmax kernels: correct on irregular shapes, adversarial inputs, every instruction set this
CPU runs, one and two threads; and the protocol's gates."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from harness_softmax import cpu, cpu_run, protocol
from harness_softmax.workload import SoftmaxWorkload, make_rows, make_vector

from harness import CellContext

ALGORITHMS = list(cpu.ALGORITHMS)
DTYPES = ["float32", "float16", "bfloat16"]
RUNNABLE_ISAS = [isa for isa in cpu.ISAS if cpu.isa_unavailable_reason(isa) is None]
# Irregular shapes: many short rows, a few long rows, one long vector (split over threads), tiny rows.
SHAPES = [(1823, 781), (3, 70001), (1, 100003), (7, 5), (1, 1), (2, 17)]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for the float64 references: on a loaded 2-core CI machine OpenMP barriers wait for
    descheduled threads and small ops slow down tenfold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def context(tmp_path, seed: int = 0, **budget) -> CellContext:
    return CellContext(seed=seed, budget=budget, checkpoint_dir=tmp_path / "ck", cache_dir=tmp_path / "cache")


def run_checked(algorithm: str, x: torch.Tensor, dtype: str, **options) -> float:
    """Run one compiled kernel on a poisoned output; return its max relative error (every element written)."""
    out = torch.empty_like(x)
    protocol.poison(out, dtype)
    cpu.softmax(algorithm, x, out, **options)
    assert protocol.count_unwritten(out, dtype) == (0, None), (algorithm, options)
    error, _ = protocol.max_relative_error(out, torch.softmax(x.double(), dim=-1), dtype)
    return error


def test_the_kernels_were_built_and_the_best_instruction_set_is_chosen():
    assert "portable" in RUNNABLE_ISAS, cpu.isa_unavailable_reason("portable")
    assert cpu.compiled_unavailable_reason() is None
    features = cpu.cpu_features()
    if features.get("avx2") and features.get("fma"):
        assert cpu.select_isa("auto") in ("avx512", "avx2")
    assert cpu.kernel_module(cpu.select_isa("auto")).ISA == cpu.select_isa("auto")


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_compiled_algorithm_matches_float64_reference(algorithm, dtype, isa):
    for seed, (rows, cols) in enumerate(SHAPES):
        workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=100 + seed)
        x = workload.input(0)
        for threads, nontemporal in [(1, "off"), (2, "on")]:
            error = run_checked(algorithm, x, dtype, isa=isa, threads=threads, nontemporal=nontemporal)
            assert error <= protocol.tolerance_for(dtype, 0.0, cols), (algorithm, isa, rows, cols, threads, error)


def adversarial_rows(cols: int = 3001) -> dict[str, torch.Tensor]:
    """Inputs of XNNPACK's benchmark and the edge cases every softmax must survive."""
    generator = torch.Generator().manual_seed(7)
    uniform = torch.empty(4, cols).uniform_(-1000, 1000, generator=generator)
    with_neg_inf = uniform.clone()
    with_neg_inf[:, ::7] = -math.inf
    one_huge = uniform.clone()
    one_huge[:, cols // 3] = 1e4  # exp overflows float32 and float64: only max subtraction or (m, e) survives
    return {
        "uniform(-1000, 1000)": uniform,
        "all equal": torch.full((4, cols), 3.5),
        "-inf entries": with_neg_inf,
        "one huge value": one_huge,
        "near 1000": torch.empty(4, cols).uniform_(900, 1000, generator=generator),
        "narrow uniform(-1, 1), long": torch.empty(1, 300_001).uniform_(-1, 1, generator=generator),
    }


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_adversarial_inputs(algorithm, isa):
    for name, values in adversarial_rows().items():
        for dtype in DTYPES:
            x = values.to(getattr(torch, dtype))
            for threads in (1, 2):
                error = run_checked(algorithm, x, dtype, isa=isa, threads=threads, nontemporal="auto")
                assert error <= protocol.tolerance_for(dtype, 0.0, x.shape[1]), (name, dtype, threads, error)


@pytest.mark.parametrize("algorithm", ["three-pass-recompute", "three-pass-reload", "online", "fused"])
def test_max_based_algorithms_take_any_finite_float32(algorithm):
    x = torch.empty(3, 1001).uniform_(-1000, 1000)
    x[:, 10] = 3.0e38
    x[1, 20] = -3.0e38
    assert run_checked(algorithm, x, "float32", threads=1) == 0.0


def test_two_pass_needs_no_max_even_where_exp_overflows_float32():
    workload = SoftmaxWorkload(5, 3001, "float32", 900.0, 1000.0, seed=4)
    assert run_checked("two-pass", workload.input(0), "float32") <= protocol.DEFAULT_TOLERANCE["float32"]


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_outputs_take_the_aligned_head_path_of_streaming_stores(dtype, isa):
    storage = torch.empty(1, 20_011).uniform_(-50, 50).to(getattr(torch, dtype))
    for offset in (1, 3, 9):  # views starting off the 64-byte alignment of torch's allocator
        x = storage[:, offset:].contiguous()
        out_storage = torch.empty(1, x.shape[1] + offset, dtype=x.dtype)
        out = out_storage[:, offset:]
        assert out.is_contiguous() and out.data_ptr() % 64 != 0
        protocol.poison(out_storage, dtype)
        for algorithm in ALGORITHMS:
            cpu.softmax(algorithm, x, out, isa=isa, threads=1, nontemporal="on")
            error, _ = protocol.max_relative_error(out, torch.softmax(x.double(), dim=-1), dtype)
            assert error <= protocol.DEFAULT_TOLERANCE[dtype], (algorithm, offset, error)
        assert protocol.count_unwritten(out_storage[:, :offset], dtype) == (offset, 0)  # nothing before the view


def test_kernels_refuse_what_they_cannot_take():
    x = torch.rand(4, 8)
    with pytest.raises(ValueError, match="contiguous"):
        cpu.softmax("online", x.t(), torch.empty(4, 8).t())
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        cpu.softmax("online", x.double(), torch.empty(4, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="one shape and dtype"):
        cpu.softmax("online", x, torch.empty(4, 9))
    with pytest.raises(cpu.CompiledKernelsUnavailable, match="unknown instruction set"):
        cpu.softmax("online", x, torch.empty(4, 8), isa="neon")


def test_without_compiled_kernels_the_algorithms_say_why(monkeypatch):
    reason = "the compiled portable softmax kernels were not built (No module named 'x'); reinstall ..."
    monkeypatch.setattr(cpu, "_import_isa", lambda isa: reason)
    cpu.cpu_features.cache_clear()
    try:
        assert cpu.compiled_unavailable_reason() == f"no compiled CPU softmax kernels can run here: {reason}"
        with pytest.raises(cpu.CompiledKernelsUnavailable, match="were not built"):
            cpu.softmax("two-pass", torch.rand(2, 3), torch.empty(2, 3))
        assert cpu.memcpy_bandwidth_gbps(1 << 20) is None  # the runner then falls back to torch's copy
    finally:
        cpu.cpu_features.cache_clear()


def test_partial_results_of_chunks_combine_exactly():
    # two-pass: 0.75 * 2^10 + 0.5 * 2^8 = 896 = 0.875 * 2^10
    assert cpu.combine_mantissa_exponent([(0.75, 10.0), (0.5, 8.0)]) == (0.875, 10.0)
    assert cpu.combine_mantissa_exponent([(0.5, 1.0), (0.5, -5000.0)]) == (0.5, 1.0)  # far smaller: no underflow error
    row_max, total = cpu.combine_max_sum([(2.0, 1.5), (0.0, 3.0), (-math.inf, 0.0)])
    assert row_max == 2.0 and total == pytest.approx(1.5 + 3.0 * math.exp(-2.0))


def test_row_splits_cover_every_element_once():
    for count, parts, align in [(100003, 2, 64), (10, 4, 1), (5, 8, 1), (64, 2, 64), (1, 2, 64)]:
        pieces = cpu._split(count, parts, align)
        assert sum(length for _, length in pieces) == count and len(pieces) <= parts
        assert all(start % align == 0 for start, _ in pieces)
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(pieces))


def test_nontemporal_auto_streams_outputs_larger_than_the_l2_cache():
    l2 = cpu.cache_bytes(2) or 1 << 20
    assert cpu.use_nontemporal("auto", 4 * l2, threads=1)
    assert not cpu.use_nontemporal("auto", l2 // 2, threads=1)
    assert not cpu.use_nontemporal("auto", 3 * l2 // 2, threads=2)  # per thread
    assert cpu.use_nontemporal("on", 1, 1) and not cpu.use_nontemporal("off", 1 << 40, 1)


@pytest.mark.parametrize("baseline", [cpu.torch_softmax, cpu.scipy_softmax])
def test_baselines_match_float64_reference(baseline):
    workload = SoftmaxWorkload(1823, 781, "float32", -1000.0, 1000.0, seed=3)
    out = workload.output(0)
    baseline(workload.input(0), out)
    error, _ = protocol.max_relative_error(out, workload.reference(0), "float32")
    assert error <= protocol.DEFAULT_TOLERANCE["float32"]


def test_scipy_refuses_bfloat16_with_reason():
    workload = SoftmaxWorkload(4, 8, "bfloat16", -1.0, 1.0, seed=0)
    with pytest.raises(TypeError, match="numpy has no bfloat16"):
        cpu.scipy_softmax(workload.input(0), workload.output(0))


def _broken_leaves_last_element(x, out):
    """A kernel with an off-by-one: everything right except the last element of the last row."""
    full = torch.softmax(x.float(), dim=-1).to(out.dtype)
    out.reshape(-1)[:-1] = full.reshape(-1)[:-1]


def _broken_off_by_a_little(x, out):
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
    # Flush-to-zero (CuPy's -ftz=true, the CPU kernels' MXCSR FTZ): a subnormal result written as 0 is exact ...
    flushed, _ = protocol.max_relative_error(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[1e-39, 1.0]], dtype=torch.float64), "float32"
    )
    assert flushed == 0.0
    # ... but a wrong subnormal, or a 0 where the reference is a normal number, is not.
    wrong, _ = protocol.max_relative_error(
        torch.tensor([[5e-39, 0.0]]), torch.tensor([[1e-39, 2e-38]], dtype=torch.float64), "float32"
    )
    assert wrong == pytest.approx(1.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_run_outcome_is_consistent(tmp_path, threads):
    workload = make_vector(
        params={"n": 30011, "dtype": "bfloat16", "low": -1000.0, "high": 1000.0, "buffers": 3},
        context=context(tmp_path, seed=5),
    )
    torch.set_num_threads(3)  # differs from the cell's threads (the autouse fixture restores it afterwards)
    outcome = cpu_run.run_online(
        environment=workload,
        params={"tolerance": 0.0, "threads": threads, "isa": "auto", "nontemporal": "auto"},
        context=context(tmp_path, seed=5, warmup=1, repeats=4, copy_mb=8),
    )
    assert torch.get_num_threads() == 3  # the cell's thread setting does not leak into the next
    assert outcome["algorithm"] == "softmax-online-cpu" and outcome["device"] == "cpu"
    assert outcome["threads"] == threads and outcome["buffers"] == 3 and outcome["repeats"] == 4
    assert outcome["isa"] == cpu.select_isa("auto") and outcome["nontemporal"] is False
    assert outcome["ceiling_method"] == "memcpy of the cell's buffers, interleaved"
    assert outcome["large_copy_gbps"] > 0 and outcome["fraction_of_large_copy"] > 0
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


@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_the_extension_declares_the_codes_python_calls_it_with(isa: str) -> None:
    """softmax_cpu.c is the one declaration of its algorithm and dtype codes: every algorithm and dtype Python
    offers has exactly one code there (distinct codes), so a code can never name another kernel."""
    module = cpu.kernel_module(isa)
    assert set(module.ALGORITHM_CODES) == set(cpu.ALGORITHMS)
    assert set(module.DTYPE_CODES) == set(cpu.DTYPES) == set(DTYPES)
    assert len(set(module.ALGORITHM_CODES.values())) == len(module.ALGORITHM_CODES)
    assert len(set(module.DTYPE_CODES.values())) == len(module.DTYPE_CODES)
    assert not hasattr(cpu, "DTYPE_CODES"), "the codes are read from the extension, never declared in Python"
