"""Where a result came from: hardware, software versions and the code's git state.

Read without importing torch or cupy (package metadata and system files only), once per driver process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def _cupy_version() -> str:
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda"):
            return dist.version
    return "none"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> tuple[str, str, str]:
    """(GPU model, driver version, CUDA version) from nvidia-smi, or 'none'."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "none", "none", "none"
    try:
        out = (
            subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
            .stdout.strip()
            .splitlines()
        )
        name, driver = (part.strip() for part in out[0].split(",", 1))
        header = subprocess.run([smi], capture_output=True, text=True, timeout=10).stdout
        cuda = header.split("CUDA Version:")[1].split()[0] if "CUDA Version:" in header else "none"
        return name, driver, cuda
    except (subprocess.SubprocessError, OSError, IndexError, ValueError):
        return "none", "none", "none"


def gpu_visible() -> bool:
    """Whether this process can use a CUDA GPU: asked of torch or CuPy, whichever is installed (torch first),
    so ``CUDA_VISIBLE_DEVICES`` and the driver are honoured exactly as the cell's code will see them."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        pass
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU" here
        return False


def git_state(directory: Path | None = None) -> tuple[str, bool]:
    """(full commit SHA, dirty) of the git checkout holding ``directory`` (cwd by default); ('none', False)
    outside one. Dirty: tracked files differ from the commit (untracked files are not the code under test)."""
    cwd = str(directory or Path.cwd())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return commit, bool(status.strip())
    except (subprocess.SubprocessError, OSError):
        return "none", False


def git_commit_time(directory: Path, commit: str) -> float | None:
    """The committer date of ``commit`` (seconds since the epoch) in the checkout at ``directory``; None when
    unknown. Histories are drawn in commit order by it: a run of an old commit lands where that commit is."""
    if not commit or commit == "none":
        return None
    try:
        shown = subprocess.run(
            ["git", "show", "-s", "--format=%ct", commit], cwd=str(directory), capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        return float(shown)
    except (subprocess.SubprocessError, OSError, ValueError):
        return None


def code_under_test(explicit: Path | None, declared: Path | None, suite_folder: Path) -> tuple[Path, str, bool]:
    """(repository, commit, dirty) of the code under test: ``--repo`` when given, else the suite's declared
    ``repository``, else the suite file's checkout, else the working directory's (a suite shipped inside an
    installed plugin, run from the library's checkout). A repository that was named but is not a git checkout
    is an error: recording no commit for it would pass silently."""
    from harness.errors import BadInput

    for named, origin in ((explicit, "--repo"), (declared, "the suite's `repository`")):
        if named is None:
            continue
        if not named.is_dir():
            raise BadInput(f"{origin} {named}: no such folder (the repository whose code is under test)")
        commit, dirty = git_state(named)
        if commit == "none":
            raise BadInput(f"{origin} {named}: not a git checkout with a commit; `git init` and commit it, or drop it")
        return named, commit, dirty
    for folder in (suite_folder, Path.cwd()):
        commit, dirty = git_state(folder)
        if commit != "none":
            return folder, commit, dirty
    return Path.cwd(), "none", False


@functools.cache
def machine_info() -> dict[str, Any]:
    """Hardware and software facts, plus ``fingerprint``: a short hash of what makes timings comparable."""
    gpu, driver, cuda = _gpu()
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "versions": {
            "python": platform.python_version(),
            "harness": _package_version("harness"),
            "torch": _package_version("torch"),
            "cupy": _cupy_version(),
            "numpy": _package_version("numpy"),
            "mlflow": _package_version("mlflow"),
            "scipy": _package_version("scipy"),
            "gymnasium": _package_version("gymnasium"),
            "mujoco": _package_version("mujoco"),
            "cuda": cuda,
            "driver": driver,
        },
    }
    comparable = {
        "cpu": info["cpu"],
        "cpu_count": info["cpu_count"],
        "gpu": gpu,
        # What changes numbers of the same code on the same hardware: simulators, kernels, numerics.
        **{
            k: info["versions"][k]
            for k in ("python", "torch", "cupy", "cuda", "driver", "numpy", "scipy", "gymnasium", "mujoco")
        },
    }
    info["fingerprint"] = hashlib.sha256(json.dumps(comparable, sort_keys=True).encode()).hexdigest()[:12]
    return info
