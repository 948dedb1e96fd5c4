"""Running one cell: what every executor (local pool, Ray, in-process checks) calls in its worker.

Nothing here imports MLflow: workers only compute and return a :class:`CellResult`; the driver records it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import math
import os
import random
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.context import CellContext
from harness.errors import CellSkipped
from harness.machine import gpu_visible
from harness.plugins import PluginOptions, registry_for
from harness.record import Cell, CellResult, WorkerOptions, is_bool
from harness.run import isolation
from harness.specs import Resources, resolve_callable


def seed_everything(seed: int) -> None:
    """Seed python, numpy and (if a plugin imported it) torch, so the same seed gives the same cell."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, set, frozenset)):
        return str(value) if isinstance(value, Path) else sorted(value)
    return repr(value)


def to_json_compatible(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome as plain JSON data (numpy scalars and arrays become numbers and lists)."""
    return json.loads(json.dumps(dict(outcome), default=_jsonable, allow_nan=True))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_context(
    cell: Cell, results_dir: str | Path, started: float, device: str, started_monotonic: float | None = None
) -> CellContext:
    results = Path(results_dir)
    deadline = started + cell.timeout_s if cell.timeout_s else math.inf
    if started_monotonic is None:
        started_monotonic = time.monotonic()
    return CellContext(
        _monotonic_deadline=started_monotonic + cell.timeout_s if cell.timeout_s else None,
        seed=cell.seed,
        device=device,
        budget=dict(cell.budget),
        profile=cell.profile,
        deadline=deadline,
        checkpoint_dir=results / "checkpoints" / cell.key,
        cache_dir=results / "cache",
        cell={
            "key": cell.key,
            "label": cell.label,
            "suite": cell.suite,
            "algorithm": cell.algorithm.name,
            "environment": cell.environment.name,
            "seed": cell.seed,
            "algorithm_params": dict(cell.algorithm.params),
            "environment_params": dict(cell.environment.params),
        },
    )


def choose_device(requested: str, *resources: Resources) -> str:
    """``"cuda"`` or ``"cpu"`` for this cell, from its specs' resources and the run's ``--device``.

    A spec that needs a GPU always gets ``"cuda"`` (its own ``requires`` says whether one is usable); one that
    can use a GPU gets it unless the run says ``cpu``, and ``--device cuda`` without a visible GPU skips the
    cell rather than quietly measuring the CPU.
    """
    if any(r.gpus > 0 for r in resources):
        return "cuda"
    if not any(r.uses_gpu for r in resources) or requested == "cpu":
        return "cpu"
    if gpu_visible():
        return "cuda"
    if requested == "cuda":
        raise CellSkipped("--device cuda: no CUDA GPU is visible to this worker")
    return "cpu"


#: How much of a failed cell's captured output its record keeps (the whole log stays in the log file).
OUTPUT_TAIL_CHARS = 4000


@contextlib.contextmanager
def captured_output(log_path: Path | None) -> Iterator[None]:
    """Send everything this process writes to file descriptors 1 and 2 (Python prints, C libraries, MuJoCo's
    warnings) to ``log_path`` while the cell runs, so a plugin's output never mixes into the driver's stdout
    (``--json``); with ``None``, leave the output where it goes."""
    if log_path is None:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _flush_streams()
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            _flush_streams()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced by a plugin: nothing left to flush
            pass


#: Why this worker must not run another cell (set when a cell changed state that cannot be restored).
replace_reasons: list[str] = []


def replace_worker_after_this_cell(reasons: list[str]) -> None:
    """Ask for this worker to be replaced once its result is sent: the executor that runs it checks
    :data:`replace_reasons` between cells (the local pool's workers exit; a fresh one takes the next cell)."""
    replace_reasons.extend(reasons)


def tail_of(path: Path) -> str:
    """The last :data:`OUTPUT_TAIL_CHARS` characters of a log file ("" when unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - OUTPUT_TAIL_CHARS))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def execute_cell(
    cell: Cell,
    plugin_options: PluginOptions,
    results_dir: str | Path,
    attempt: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
    worker_options: WorkerOptions = WorkerOptions(),
) -> CellResult:
    """Run one cell in this process and return its result; never raises for a cell's own failure.

    The cell's output goes to ``results/logs/<key>/<record id>.log`` (unless the run shows it); the record
    names the file and, for a cell that did not succeed, keeps the end of it. ``progress`` receives the cell's
    progress events (:meth:`harness.CellContext.progress`), the first one as the cell starts.
    """
    record_id = uuid.uuid4().hex
    if not faulthandler.is_enabled():
        # A segfault in native code then leaves the Python traceback in the cell's log (file descriptor 2).
        faulthandler.enable()
    if progress is not None:
        _send(progress, {"key": cell.key, "done": 0.0, "total": None, "note": "starting", "started": time.time()})
    log_path = None if worker_options.show_output else Path(results_dir) / "logs" / cell.key / f"{record_id}.log"
    before = isolation.snapshot()
    with captured_output(log_path):
        try:
            result = _execute(cell, plugin_options, results_dir, attempt, record_id, progress, worker_options)
        finally:
            # Inside the capture: a note on what could not be restored lands in the cell's own log.
            try:
                unrestorable = isolation.restore(before)
            except Exception as exc:  # a restore that fails leaves the state unknown: replace the worker
                unrestorable = [f"process state ({type(exc).__name__}: {exc})"]
            if unrestorable:
                print(
                    "harness: this cell changed process state that cannot be restored: "
                    f"{'; '.join(unrestorable)}; the worker is replaced before the next cell",
                    file=sys.stderr,
                    flush=True,
                )
    if unrestorable:
        replace_worker_after_this_cell(unrestorable)
    if log_path is not None and log_path.exists():
        if log_path.stat().st_size == 0:
            log_path.unlink()
        else:
            result.log_path = str(log_path)
            if result.status != "ok":
                result.output_tail = tail_of(log_path)
    return result


def _short_repr(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _send(progress: Callable[[dict[str, Any]], None], event: dict[str, Any]) -> None:
    try:
        progress(event)
    except Exception:  # a display channel that broke must not fail the cell
        pass


def _execute(
    cell: Cell,
    plugin_options: PluginOptions,
    results_dir: str | Path,
    attempt: int,
    record_id: str,
    progress: Callable[[dict[str, Any]], None] | None,
    worker_options: WorkerOptions,
) -> CellResult:
    registry = registry_for(plugin_options)
    started = time.time()  # when, for the record; how long is measured on the monotonic clock
    clock = time.monotonic()
    result = CellResult(
        cell=cell,
        status="failed",
        started_at=started,
        worker=worker_name(),
        attempt=attempt,
        record_id=record_id,
    )
    context: CellContext | None = None
    try:
        algorithm = registry.get("algorithm", cell.algorithm.name).spec
        environment = registry.get("environment", cell.environment.name).spec
        metric_specs = [registry.get("metric", name).spec for name in cell.metrics]
        for spec in (algorithm, environment, *metric_specs):
            reason = spec.unavailable_reason()
            if reason:
                raise CellSkipped(f"{spec.name} is unavailable here: {reason}")
        # Resolve (import) everything before seeding: imports may consume randomness or import torch.
        make, run = resolve_callable(environment.make), resolve_callable(algorithm.run)
        computes = [(spec.name, resolve_callable(spec.compute)) for spec in metric_specs]
        result.device = choose_device(worker_options.device, algorithm.resources, environment.resources)
        context = make_context(cell, results_dir, started, result.device, clock)
        context.progress_sink = progress
        if worker_options.fresh_start and attempt == 1:
            # A checkpoint belongs to one attempt: a fresh run never continues a finished or older attempt.
            shutil.rmtree(context.checkpoint_dir, ignore_errors=True)
        context.components.update(make=make, run=run)
        seed_everything(cell.seed)
        outcome = registry.hook.harness_execute_cell(cell=cell, context=context) or {}
        built_environment = context.components.get("environment")
        metrics: dict[str, float] = {}
        for name, compute in computes:
            try:
                value = compute(outcome=outcome, environment=built_environment, context=context)
            except Exception as exc:
                raise RuntimeError(f"metric {name!r} failed: {type(exc).__name__}: {exc}") from exc
            if value is None:
                continue
            if is_bool(value) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
                raise TypeError(
                    f"metric {name!r} returned {value!r} ({type(value).__name__}); "
                    "compute() must return a float or None"
                )
            try:
                number = float(value)
            except Exception as exc:  # e.g. an array of several values, or a __float__ that raises
                raise TypeError(
                    f"metric {name!r} returned {_short_repr(value)} ({type(value).__name__}), which float() "
                    f"refuses ({type(exc).__name__}: {exc}); compute() must return a float or None"
                ) from exc
            if not math.isfinite(number):
                # A NaN score reported as "ok" would empty the leaderboard without a word: it is a failure.
                raise ValueError(
                    f"metric {name!r} is {number} (not a finite number); the cell's outcome or data went wrong "
                    "(check the dataset for NaN/inf values, and the training curves for divergence)"
                )
            metrics[name] = number
        result.status = "ok"
        result.metrics = metrics
        result.history = list(context.history)
        result.outcome = to_json_compatible(outcome)
        # Finished: its checkpoint must never stand in for a later run of the same cell.
        shutil.rmtree(context.checkpoint_dir, ignore_errors=True)
    except CellSkipped as exc:
        result.status = "skipped"
        result.error = str(exc)
        result.error_type = "CellSkipped"
    except MemoryError as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {describe_memory_error(exc)}"
        result.error_type = type(exc).__name__
        result.traceback = traceback.format_exc()
    except Exception as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        result.error_type = type(exc).__name__
        result.traceback = traceback.format_exc()
    except BaseException as exc:
        # SystemExit and KeyboardInterrupt raised by the cell's own code are the cell's failure, never the
        # run's end: the user's Ctrl-C and SIGTERM reach the driver, and the local pool's workers ignore SIGINT.
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {describe_base_exception(exc)}"
        result.error_type = type(exc).__name__
        result.traceback = traceback.format_exc()
    finally:
        if context is not None:
            result.inputs = list(context.inputs)
            result.shared_setup_s = float(context.measurements.get("shared_setup_s", 0.0))
            _close(context.components.get("environment"))
        # A wall clock stepped during the cell must not change its duration (finished_at - started_at).
        result.finished_at = started + (time.monotonic() - clock)
    return result


def describe_base_exception(exc: BaseException) -> str:
    """Why a cell that raised ``SystemExit``, ``KeyboardInterrupt`` (or another ``BaseException``) failed."""
    if isinstance(exc, SystemExit):
        return (
            f"the cell called sys.exit({exc.code!r}); a plugin must return its outcome or raise an exception, "
            "never exit the worker process"
        )
    if isinstance(exc, KeyboardInterrupt):
        detail = f" ({exc})" if str(exc) else ""
        return f"raised by the cell{detail}, not by a Ctrl-C of the run; the run went on with the other cells"
    return str(exc) or "raised by the cell"


def describe_memory_error(exc: MemoryError) -> str:
    """What ran out, for a reader: numpy's own message (it names the size asked for) or the process's and the
    machine's memory when Python knows no more than "MemoryError"."""
    message = str(exc).strip()
    try:
        import psutil

        process = psutil.Process().memory_info().rss / 2**30
        machine = psutil.virtual_memory()
        facts = (
            f"this worker held {process:.2f} GiB; the machine had {machine.available / 2**30:.2f} GiB of "
            f"{machine.total / 2**30:.2f} GiB available"
        )
    except Exception:  # psutil missing or the probe itself failed: say what we know
        facts = "memory facts unavailable"
    asked = f"{message}; " if message else "out of memory (Python could not allocate more); "
    return f"{asked}{facts}. Lower the batch size or dataset size, or run fewer --jobs at once"


def _close(environment: Any) -> None:
    close = getattr(environment, "close", None)
    if callable(close):
        try:
            close()
        except BaseException:  # closing is best effort (even a sys.exit in it); the result is already decided
            pass
