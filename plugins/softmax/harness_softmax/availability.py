"""Availability probes for the GPU algorithms (``requires`` of their specs): None means "can run here".

``harness list`` calls these for every spec, so they import neither CuPy nor torch (importing torch alone takes
seconds): packages are looked up with ``importlib.util.find_spec``, the GPU is counted through the CUDA driver
API with ctypes (``cuInit`` and ``cuDeviceGetCount`` honour ``CUDA_VISIBLE_DEVICES`` as CuPy and torch do),
NVRTC is located with ``cuda.pathfinder``, the library CuPy itself loads it with, and torch's CUDA build is read
from its ``version.py`` without importing the package.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
from pathlib import Path

GPU_INSTALL_HINT = "install it with: pip install 'harness-softmax[gpu]'"


def cuda_device_count() -> tuple[int, str | None]:
    """(visible CUDA devices, why none when 0) from the driver library, without CuPy or torch."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return 0, f"no CUDA driver (libcuda.so.1 cannot be loaded: {exc})"
    status = driver.cuInit(0)
    if status != 0:
        return 0, f"the CUDA driver failed to initialize (cuInit returned error {status})"
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != 0:
        return 0, f"the CUDA driver cannot count devices (cuDeviceGetCount returned error {status})"
    if count.value < 1:
        return 0, "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)"
    return count.value, None


def nvrtc_unavailable_reason() -> str | None:
    """Why CuPy could not load NVRTC to compile the kernels, or None (found the way CuPy finds it)."""
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.pathfinder") is None:
        return None  # an older CuPy that searches by itself: the first kernel compile reports a missing NVRTC
    from cuda.pathfinder import load_nvidia_dynamic_lib  # pure Python and ctypes: light

    try:
        load_nvidia_dynamic_lib("nvrtc")
    except Exception as exc:
        return f"CuPy cannot load NVRTC to compile the kernels ({type(exc).__name__}: {exc}); {GPU_INSTALL_HINT}"
    return None


def cupy_unavailable_reason() -> str | None:
    """Why the CuPy softmax kernels cannot run here, or None."""
    if importlib.util.find_spec("cupy") is None:
        return f"CuPy is not installed; {GPU_INSTALL_HINT}"
    count, reason = cuda_device_count()
    if count < 1:
        return f"no usable CUDA device: {reason}"
    return nvrtc_unavailable_reason()


def torch_cuda_build() -> tuple[str | None, str]:
    """(the CUDA version this torch was built with or None, torch's version), read from ``torch/version.py``."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None, "not installed"
    text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    cuda = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return (cuda.group(1) if cuda else None), (version.group(1) if version else "unknown version")


def torch_cuda_unavailable_reason() -> str | None:
    """Why torch.softmax cannot run on a GPU here, or None."""
    cuda, version = torch_cuda_build()
    if version == "not installed":
        return "torch is not installed: pip install torch"
    if cuda is None:
        return f"this torch ({version}) is built without CUDA"
    count, reason = cuda_device_count()
    if count < 1:
        return f"torch sees no CUDA device: {reason}"
    return cupy_unavailable_reason()  # the GPU runner times with CuPy events and moves buffers with CuPy
