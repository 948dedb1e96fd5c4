"""Availability probes for the GPU algorithms (``requires`` of their specs): None means "can run here"."""

from __future__ import annotations


def cupy_unavailable_reason() -> str | None:
    """Why the CuPy softmax kernels cannot run here, or None."""
    try:
        import cupy
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); install it with: pip install 'harness-softmax[gpu]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver or device
        return f"no usable CUDA device: {type(exc).__name__}: {exc}"
    if count < 1:
        return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)"
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as exc:
        return (
            f"CuPy cannot load NVRTC to compile the kernels ({type(exc).__name__}: {exc}); "
            "install it with: pip install 'harness-softmax[gpu]'"
        )
    return None


def torch_cuda_unavailable_reason() -> str | None:
    """Why torch.softmax cannot run on a GPU here, or None."""
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return cupy_unavailable_reason()  # the GPU runner times with CuPy events and moves buffers with CuPy
