"""Step ``environment`` of the GPU check: the facts every later figure depends on, and whether a GPU is there.

GPU model, memory, multiprocessors and L2 (CuPy), driver and CUDA versions (nvidia-smi, CuPy's runtime and
driver, nvcc), CuPy, NVRTC and torch versions, torch's CUDA build, the device-to-device copy bandwidth (a
1 GiB copy, median of 20 timed with CUDA events, bytes read plus written: the roofline of every kernel table)
through CuPy and through torch, and which of the project's dependencies import. Exits 3 (the check skips its
GPU steps) when CuPy sees no CUDA device, after writing the facts it could gather.

    python benchmarks/gpu/environment.py --json env.json --md env.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NO_GPU_EXIT = 3
COPY_BYTES = 1 << 30
COPY_REPEATS = 20
MODULES = (
    "harness",
    "harness.cli.main",
    "harness_softmax",
    "harness_quant",
    "harness_rl",
    "cupy",
    "torch",
    "pydantic",
    "mlflow",
    "pebble",
    "gymnasium",
    "mujoco",
    "pytest",
    "pytest_timeout",
    "sklearn",
    "scipy",
)


def command_output(*command: str) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    return (completed.stdout or completed.stderr).strip()


def importable(module: str) -> str:
    """'ok <version>' or the import error, in a fresh interpreter (an import may poison this one)."""
    code = f"import importlib; m = importlib.import_module({module!r}); print(getattr(m, '__version__', '') or '')"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if completed.returncode == 0:
        return f"ok {completed.stdout.strip()}".strip()
    return "missing: " + ((completed.stderr.strip().splitlines() or ["?"])[-1])[:200]


def cupy_facts(facts: dict[str, Any]) -> None:
    """CuPy's versions, the device and the copy bandwidth, into ``facts`` as far as they can be read."""
    import cupy

    facts["cupy"] = cupy.__version__
    try:
        facts["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        facts["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    except Exception as exc:
        facts["cuda_runtime_error"] = f"{type(exc).__name__}: {exc}"
    try:
        facts["nvrtc"] = ".".join(map(str, cupy.cuda.nvrtc.getVersion()))
    except Exception as exc:
        facts["nvrtc_error"] = f"{type(exc).__name__}: {exc}"
    count = cupy.cuda.runtime.getDeviceCount()  # raises without a driver or device
    facts["device_count"] = count
    if count < 1:
        return
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    name = properties["name"]
    device = cupy.cuda.Device(0)
    facts.update(
        gpu=name.decode() if isinstance(name, bytes) else str(name),
        compute_capability=device.compute_capability,
        multiprocessors=device.attributes["MultiProcessorCount"],
        l2_bytes=device.attributes["L2CacheSize"],
        memory_bytes=int(properties["totalGlobalMem"]),
        memory_clock_khz=int(properties.get("memoryClockRate", 0)),
        memory_bus_bits=int(properties.get("memoryBusWidth", 0)),
    )
    source = cupy.ones(COPY_BYTES // 4, dtype=cupy.float32)
    target = cupy.empty_like(source)
    times = []
    for i in range(COPY_REPEATS + 3):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        target.data.copy_from_device_async(source.data, source.nbytes)
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    facts["copy_gbps_cupy"] = 2 * COPY_BYTES / statistics.median(times) / 1e9
    del source, target
    cupy.get_default_memory_pool().free_all_blocks()


def torch_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    facts["torch_cuda_available"] = bool(torch.cuda.is_available())
    if not facts["torch_cuda_available"]:
        return facts
    facts["torch_gpu"] = torch.cuda.get_device_name(0)
    source = torch.ones(COPY_BYTES // 4, device="cuda")
    target = torch.empty_like(source)
    times = []
    for i in range(COPY_REPEATS + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(source)
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1e3)
    facts["copy_gbps_torch"] = 2 * COPY_BYTES / statistics.median(times) / 1e9
    del source, target
    torch.cuda.empty_cache()
    return facts


def gather() -> tuple[dict[str, Any], str | None]:
    """(facts, why no GPU is usable or None)."""
    facts: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_smi": command_output(
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
            "--format=csv,noheader",
        ),
        "nvidia_smi_cuda": next(
            (line.strip() for line in (command_output("nvidia-smi") or "").splitlines() if "CUDA Version" in line), None
        ),
        "nvcc": (command_output("nvcc", "--version") or "").splitlines()[-1:] or None,
    }
    reason = None
    try:
        cupy_facts(facts)
        if facts.get("device_count", 0) < 1:
            reason = "CuPy sees no CUDA device (check CUDA_VISIBLE_DEVICES)"
    except Exception as exc:  # no CuPy, no driver, no device
        reason = f"CuPy cannot use a GPU: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        facts.update(torch_facts())
    except Exception as exc:
        facts["torch_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    facts["imports"] = {module: importable(module) for module in MODULES}
    return facts, reason


def markdown(facts: dict[str, Any]) -> str:
    rows = [(key, value) for key, value in facts.items() if key != "imports"]
    rows += [(f"import {module}", status) for module, status in facts["imports"].items()]
    lines = ["| fact | value |", "| --- | --- |"]
    for key, value in rows:
        if isinstance(value, float):
            value = f"{value:.0f}" if value > 100 else f"{value:.3g}"
        lines.append(f"| {key} | {str(value).replace('|', '/')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    facts, reason = gather()
    facts["gpu_visible"] = reason is None
    facts["no_gpu_reason"] = reason
    if reason:
        facts["headline"] = f"no CUDA GPU is visible: {reason}"
    else:
        facts["headline"] = (
            f"{facts['gpu']} ({facts['multiprocessors']} SMs, {facts['l2_bytes'] / 2**20:.0f} MiB L2), "
            f"driver {facts.get('cuda_driver')}, runtime {facts.get('cuda_runtime')}, CuPy {facts['cupy']}, "
            f"torch {facts.get('torch')} (CUDA {facts.get('torch_cuda')}), copy {facts['copy_gbps_cupy']:.0f} GB/s"
        )
    args.json.write_text(json.dumps(facts, indent=1, default=str))
    if args.md:
        args.md.write_text(markdown(facts) + "\n")
    print(facts["headline"])
    return NO_GPU_EXIT if reason else 0


if __name__ == "__main__":
    sys.exit(main())
