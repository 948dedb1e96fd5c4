"""Every cell starts from the same process state, whatever the cells before it did in the same worker.

Workers are reused between cells (plugins are imported once per worker), so a plugin that changes process-wide
state (an environment variable, the working directory, numpy's error mode, torch's default dtype or thread
count, a closed ``sys.stdout``) would change the results of every later cell in that worker. :func:`snapshot`
records that state before a cell and :func:`restore` puts it back after; what cannot be put back (torch's
inter-op thread count can be set once per process, a lowered hard resource limit cannot be raised again) is
named in what :func:`restore` returns, and the executor then replaces the worker.

The core stays domain-free: torch is inspected only when a plugin has already imported it (it is never imported
here), numpy likewise.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import Any

try:
    import resource
except ImportError:  # not on Windows; the limits are then not watched
    resource = None  # type: ignore[assignment]

#: Resource limits a cell could lower (an unprivileged process can never raise a hard limit again).
_LIMITS = ("RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC")


@dataclass
class ProcessState:
    """What a cell may change that a later cell in the same process would see."""

    environ: dict[str, str]
    cwd: str | None
    umask: int
    streams: dict[str, Any]
    numpy_errstate: dict[str, str] | None = None
    torch: dict[str, Any] | None = None
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)


def _torch_state(torch: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "default_dtype": torch.get_default_dtype(),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "grad_enabled": torch.is_grad_enabled(),
    }
    get_default_device = getattr(torch, "get_default_device", None)
    if get_default_device is not None:
        state["default_device"] = get_default_device()
    return state


def _torch_import_defaults(torch: Any) -> dict[str, Any]:
    """The state torch had just after its import, for a cell that imported it: its documented defaults, and the
    intra-op thread count its import took from ``OMP_NUM_THREADS`` (set by the local executor's workers)."""
    state = _torch_state(torch)
    state.update(default_dtype=torch.float32, deterministic=False, grad_enabled=True)
    if "default_device" in state:
        state["default_device"] = torch.device("cpu")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    state["num_threads"] = int(threads) if threads.isdigit() and int(threads) > 0 else None
    state["num_interop_threads"] = None  # unknown: cannot be compared
    return state


def _current_umask() -> int:
    """The umask, read where Linux shows it: setting it to read it would leave a moment in which another
    thread's new files get the wrong permissions."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def snapshot() -> ProcessState:
    """The process state before a cell runs."""
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the working directory was deleted under us: nothing to return to
        cwd = None
    umask = _current_umask()
    state = ProcessState(
        environ=dict(os.environ),
        cwd=cwd,
        umask=umask,
        streams={name: getattr(sys, name) for name in ("stdin", "stdout", "stderr")},
    )
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state.numpy_errstate = dict(numpy.geterr())
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_default_dtype"):
        state.torch = _torch_state(torch)
    if resource is not None:
        for name in _LIMITS:
            if hasattr(resource, name):
                state.limits[name] = resource.getrlimit(getattr(resource, name))
    return state


def _reopen_stream(name: str, saved: Any) -> Any:
    """``saved`` if it is still open, else a new text stream on its file descriptor (a cell closed it)."""
    if saved is not None and not getattr(saved, "closed", False):
        return saved
    fd = {"stdin": 0, "stdout": 1, "stderr": 2}[name]
    stream = io.TextIOWrapper(
        io.FileIO(fd, "r" if fd == 0 else "w", closefd=False),
        encoding=getattr(saved, "encoding", None) or "utf-8",
        errors=getattr(saved, "errors", None) or "backslashreplace",
        line_buffering=fd != 0,
    )
    if getattr(sys, f"__{name}__", None) is saved:
        setattr(sys, f"__{name}__", stream)
    return stream


def restore(state: ProcessState) -> list[str]:
    """Put back what a cell changed; the things that could not be put back (the worker must then be replaced)."""
    problems: list[str] = []
    if dict(os.environ) != state.environ:
        os.environ.clear()
        os.environ.update(state.environ)
    if state.cwd is not None:
        try:
            if os.getcwd() != state.cwd:
                os.chdir(state.cwd)
        except OSError as exc:
            problems.append(f"the working directory ({state.cwd}: {exc.strerror})")
    os.umask(state.umask)
    for name, saved in state.streams.items():
        current = getattr(sys, name)
        if current is not saved or getattr(current, "closed", False):
            try:
                setattr(sys, name, _reopen_stream(name, saved))
            except (OSError, ValueError) as exc:
                problems.append(f"sys.{name} ({exc})")
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if state.numpy_errstate is not None:
            numpy.seterr(**state.numpy_errstate)
        else:  # the cell imported numpy: its defaults
            numpy.seterr(all="warn", under="ignore")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_default_dtype"):
        problems.extend(_restore_torch(torch, state.torch or _torch_import_defaults(torch)))
    if resource is not None:
        for name, limits in state.limits.items():
            number = getattr(resource, name)
            if resource.getrlimit(number) != limits:
                try:
                    resource.setrlimit(number, limits)
                except (OSError, ValueError):
                    problems.append(f"the resource limit {name} (now {resource.getrlimit(number)}, was {limits})")
    return problems


def _restore_torch(torch: Any, saved: dict[str, Any]) -> list[str]:
    problems = []
    now = _torch_state(torch)
    if now["default_dtype"] != saved["default_dtype"]:
        torch.set_default_dtype(saved["default_dtype"])
    if saved["num_threads"] is not None and now["num_threads"] != saved["num_threads"]:
        torch.set_num_threads(saved["num_threads"])
    if now["deterministic"] != saved["deterministic"]:
        torch.use_deterministic_algorithms(saved["deterministic"])
    if now["grad_enabled"] != saved["grad_enabled"]:
        torch.set_grad_enabled(saved["grad_enabled"])
    if "default_device" in saved and now.get("default_device") != saved["default_device"]:
        torch.set_default_device(saved["default_device"])
    if saved["num_interop_threads"] is not None and now["num_interop_threads"] != saved["num_interop_threads"]:
        # torch allows one call per process, before any inter-op work: there is no way back.
        problems.append(
            f"torch's inter-op thread count ({now['num_interop_threads']}, was {saved['num_interop_threads']})"
        )
    return problems
