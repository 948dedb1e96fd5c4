"""The GPU check script (benchmarks/gpu/check.py) and the fused kernel's split-row path for long rows.

Without a GPU: the check plans its steps, records a failing and a timed-out step and goes on, and on a machine
with no visible GPU reports so, skips the GPU steps and exits 2 keeping what it wrote; the split-row launch
plan covers every row. On a GPU: the split-row kernels agree with the float64 reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness_softmax import gpu, protocol
from harness_softmax.availability import cupy_unavailable_reason
from harness_softmax.workload import SoftmaxWorkload

ROOT = Path(__file__).resolve().parents[3]
CHECK = ROOT / "benchmarks" / "gpu" / "check.py"


def load(path: Path):
    name = f"gpu_check_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check():
    return load(CHECK)


def test_dry_run_plans_every_step_within_eight_minutes(check, tmp_path):
    assert check.main([str(tmp_path), "--dry-run"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    names = [s["name"] for s in summary["steps"]]
    assert names == ["setup", "environment", "pytest-gpu", "softmax", "quant", "rl"]
    assert all(s["status"] == "planned" for s in summary["steps"])
    assert summary["schema_version"] == check.SCHEMA_VERSION
    assert check.DEFAULT_BUDGET_S <= 480  # the 8 minutes of wall time
    assert (tmp_path / "summary.md").read_text().startswith("# GPU check")


def test_a_failing_and_a_timed_out_step_are_recorded_and_the_next_step_runs(check, tmp_path, monkeypatch):
    python = sys.executable
    fake = [
        check.Step("first", "prints", [python, "-c", "print('hello')"], 30, False),
        check.Step("broken", "fails", [python, "-c", "import sys; print('bad input'); sys.exit(4)"], 30, False),
        check.Step("slow", "hangs", [python, "-c", "import time; time.sleep(60)"], 1, False),
        check.Step(
            "last",
            "writes a headline",
            [
                python,
                "-c",
                "import json,sys; open(sys.argv[1],'w').write(json.dumps({'headline': 'fine'}))",
                "{work}/{name}.json",
            ],
            30,
            False,
        ),
    ]
    monkeypatch.setattr(check, "steps", lambda: fake)
    work = tmp_path / "elsewhere"
    assert check.main([str(tmp_path / "out"), "--work", str(work), "--budget-s", "120"]) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    status = {s["name"]: s for s in summary["steps"]}
    assert [status[n]["status"] for n in ("first", "broken", "slow", "last")] == ["ok", "failed", "timeout", "ok"]
    assert status["broken"]["returncode"] == 4 and "bad input" in status["broken"]["detail"]
    assert status["slow"]["duration_s"] < 30
    assert status["last"]["detail"] == "fine"
    assert summary["outcome"] == "failed: broken, slow"
    assert "hello" in (work / "first.log").read_text()
    assert (tmp_path / "out" / "steps.tar.gz").exists()  # raw files outside OUT travel packed


def test_without_a_gpu_the_check_says_so_skips_the_gpu_steps_and_keeps_its_outputs(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run(
        [sys.executable, str(CHECK), str(tmp_path), "--python", sys.executable, "--skip", "setup"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "no CUDA GPU is visible" in completed.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    status = {s["name"]: s for s in summary["steps"]}
    assert status["environment"]["status"] == "ok"
    assert summary["environment"]["gpu_visible"] is False
    assert summary["environment"]["imports"]["harness_softmax"].startswith("ok")
    for name in ("pytest-gpu", "softmax", "quant", "rl"):
        assert status[name]["status"] == "skipped" and status[name]["detail"].startswith("no GPU"), name
    assert (tmp_path / "steps" / "environment.json").exists()
    assert "| import torch | ok" in (tmp_path / "summary.md").read_text()


def test_pytest_step_parses_junit_and_tells_collection_errors_apart(tmp_path):
    pytest_gpu = load(ROOT / "benchmarks" / "gpu" / "pytest_gpu.py")
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="plugins.a" name="test_ok"/>'
        '<testcase classname="plugins.a" name="test_bad"><failure message="assert 1 == 2">x</failure></testcase>'
        '<testcase classname="" name="plugins.d4rl.tests.test_x"><error message="collection failure">'
        "ImportError</error></testcase>"
        "</testsuite></testsuites>"
    )
    tests, collection = pytest_gpu.parse_junit(report)
    assert [(t["test"], t["outcome"]) for t in tests] == [
        ("plugins.a::test_ok", "passed"),
        ("plugins.a::test_bad", "failed"),
    ]
    assert [c["test"] for c in collection] == ["plugins.d4rl.tests.test_x"]


# --- the fused kernel's split-row path (kernels/fused_split.cu) ---------------------------------------------


@pytest.mark.parametrize("cols", [32769, 40000, 65536, 70001, 131072, 200003, 262144])
@pytest.mark.parametrize("itemsize", [4, 2])
def test_split_launch_holds_the_row_in_the_smallest_cluster(cols, itemsize):
    split = gpu.split_launch(cols, itemsize)
    assert split.cluster in gpu.SPLIT_CLUSTERS and split.threads % 32 == 0 and 32 <= split.threads <= 1024
    assert split.cluster * split.chunk_cols >= cols > (split.cluster - 1) * split.chunk_cols  # no idle block
    assert all(c * 1024 * gpu.SPLIT_ITEMS < cols for c in gpu.SPLIT_CLUSTERS if c < split.cluster)
    assert split.vector == (cols * itemsize % gpu.VECTOR_BYTES == 0)
    assert split.chunk_cols % (gpu.VECTOR_BYTES // itemsize) == 0  # every chunk starts 16-byte aligned


def test_rows_longer_than_a_cluster_are_refused_with_the_algorithms_that_take_them():
    with pytest.raises(ValueError, match="softmax-online-gpu"):
        gpu.split_launch(gpu.SPLIT_MAX_COLS + 1, 4)


def test_split_instantiations_match_the_launcher():
    source = (gpu.KERNEL_DIR / "fused_split.cu").read_text()
    for cluster in gpu.SPLIT_CLUSTERS:
        assert f"SPLIT_INSTANTIATE(D, SUFFIX, {cluster}, 1, )" in source
        assert f"SPLIT_INSTANTIATE(D, SUFFIX, {cluster}, VEC, _v)" in source
    assert f"#define SPLIT_ITEMS {gpu.SPLIT_ITEMS}" in source


_REASON = cupy_unavailable_reason()


@pytest.mark.gpu
@pytest.mark.skipif(_REASON is not None, reason=f"GPU tests need CuPy and a CUDA device: {_REASON}")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_fused_split_rows_match_float64_reference(dtype):
    # Irregular (scalar loads) and aligned (128-bit loads) lengths, each cluster size, odd row counts.
    for seed, (rows, cols) in enumerate([(3, 32769), (5, 65536), (2, 70001), (7, 131072), (1, 200003), (2, 262144)]):
        workload = SoftmaxWorkload(rows, cols, dtype, -1000.0, 1000.0, seed=300 + seed)
        launch = gpu.build_fused(workload, gpu.plan_chunks(rows, cols, 132))
        ((source, target),) = gpu.device_pairs(workload, 1)
        poisoned = workload.output(0)
        protocol.poison(poisoned, dtype)
        target.set(gpu.host_bits(poisoned))
        launch(source, target)
        output = gpu.to_host(target, dtype)
        assert protocol.count_unwritten(output, dtype) == (0, None), (rows, cols)
        error, _ = protocol.max_relative_error(output, workload.reference(0), dtype)
        assert error <= protocol.tolerance_for(dtype, 0.0, cols), (dtype, rows, cols, error)
