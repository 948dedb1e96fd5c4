"""Every CUDA kernel compiles for sm_90 without a GPU: with NVRTC (how CuPy builds them) and with nvcc.

NVRTC is driven directly through ``cupy.cuda.nvrtc`` with ``-arch=compute_90``: that needs libnvrtc but no
driver or device, while CuPy's higher-level compile paths query the device first. ``make test`` installs
``harness-softmax[gpu]`` (CuPy and NVRTC), so these tests run, and must pass, on a machine without a GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from harness_softmax import gpu

SOURCES = gpu.kernel_sources()
ARCH_FLAGS = ["-arch=compute_90"]
CUPY_FLAGS = ["-ftz=true"]  # what CuPy adds to every NVRTC compile besides -arch


def nvrtc_ptx(source_text: str, name: str, options: list[str]) -> str:
    try:
        from cupy.cuda import nvrtc
    except ImportError as exc:
        pytest.fail(f"CuPy is missing ({exc}): install the GPU extra, pip install -e 'plugins/softmax[gpu]'")
    try:
        program = nvrtc.createProgram(source_text, name, [], [])
    except Exception as exc:  # libnvrtc could not be loaded
        pytest.fail(f"NVRTC is unusable ({exc}): install the GPU extra, pip install -e 'plugins/softmax[gpu]'")
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError as exc:
        pytest.fail(f"NVRTC failed on {name}: {exc}\n{nvrtc.getProgramLog(program)}")
    return nvrtc.getPTX(program).decode() if isinstance(nvrtc.getPTX(program), bytes) else nvrtc.getPTX(program)


def test_there_is_a_kernel_file_per_algorithm_and_the_launchers_know_each():
    assert {path.name for path in SOURCES} == set(gpu.KERNEL_FUNCTIONS)


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_kernel_compiles_with_nvrtc_for_compute_90(source):
    entry_points = gpu.entry_points(source.name)  # exactly the names the launchers in gpu.py ask for
    assert all(any(f"_{sfx}" in name for name in entry_points) for sfx in ("f32", "f16", "bf16"))
    # As nvcc and a reader see it (the header found on the include path) ...
    ptx = nvrtc_ptx(source.read_text(), source.name, [*ARCH_FLAGS, f"-I{gpu.KERNEL_DIR}"])
    # ... and exactly what CuPy's RawModule compiles at run time (the header inlined).
    inlined = nvrtc_ptx(gpu.inline_common_header(source.read_text()), source.name, [*ARCH_FLAGS, *CUPY_FLAGS])
    for text in (ptx, inlined):
        defined = set(re.findall(r"\.entry (\w+)\(", text))
        assert defined == entry_points, (source.name, defined ^ entry_points)
        assert ".target sm_90" in text
        assert "ld.local" not in text and "st.local" not in text  # nothing spilled: rows stay in registers


def nvcc_path() -> str | None:
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


@pytest.mark.skipif(nvcc_path() is None, reason="nvcc is not installed (CUDA toolkit); NVRTC still checks")
@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_kernel_compiles_with_nvcc_for_sm_90(source, tmp_path):
    ptx = tmp_path / f"{source.stem}.ptx"
    completed = subprocess.run(
        [
            nvcc_path(),
            "-ptx",
            "-arch=sm_90",
            f"-I{gpu.KERNEL_DIR}",
            "-Werror",
            "all-warnings",
            "-o",
            str(ptx),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert set(re.findall(r"\.entry (\w+)\(", ptx.read_text())) == gpu.entry_points(source.name)


def test_the_kernels_define_no_infinity_or_flt_max_macros_nvrtc_lacks():
    for path in [*SOURCES, gpu.KERNEL_DIR / gpu.COMMON_HEADER]:
        code = re.sub(r"//.*", "", path.read_text())
        assert not re.search(r"\b(INFINITY|FLT_MAX|HUGE_VALF)\b", code), path.name
        assert "#include <" not in code, path.name  # NVRTC has no system include path
