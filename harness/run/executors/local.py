"""The local executor: a small pool of reusable worker processes on this machine.

Pebble's process pool keeps workers alive between cells (plugins are imported once per worker), enforces a
per-cell timeout by killing only that worker, and restarts only a worker that died, so a segfault, an
``os._exit`` or the out-of-memory killer costs one cell, never the run.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, wait
from pathlib import Path
from typing import Any

import pebble

from harness.plugins import PluginOptions, registry_for
from harness.record import Cell, CellResult, WorkerOptions
from harness.run import worker
from harness.run.executors import describe_exit, failed_result
from harness.run.worker import execute_cell

#: How often the driver checks running cells against their timeouts when no result arrives.
_POLL_S = 0.2

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _exit_with_the_driver(driver_pid: int, poll_s: float = 1.0) -> None:
    """Exit once the driver is gone: a driver killed with SIGKILL (or by the out-of-memory killer) cannot
    stop its pool, and orphaned workers would burn the machine's CPUs on cells nobody will ever collect.
    Pebble's workers usually notice a dead driver themselves, but workers in long torch cells were seen
    running on for over 20 minutes after their driver was killed; this check does not depend on the pipe."""
    while os.getppid() == driver_pid:
        time.sleep(poll_s)
    os._exit(1)


#: The worker's end of the driver's progress queue (set by the pool initializer).
_progress_queue: Any = None


def _send_progress(event: dict[str, Any]) -> None:
    if _progress_queue is not None:
        _progress_queue.put_nowait(event)


def _run_cell(cell: Cell, plugin_options: PluginOptions, results_dir: str, worker_options: WorkerOptions) -> CellResult:
    """What the pool runs: the cell, with its progress events on the queue to the driver."""
    return execute_cell(cell, plugin_options, results_dir, progress=_send_progress, worker_options=worker_options)


def _exit_if_tainted(fetch_task: Callable[..., Any]) -> Callable[..., Any]:
    """Pebble's worker loop calls ``fetch_task`` after it has sent a cell's result and before it takes the next
    cell: a worker whose last cell changed state that cannot be restored exits there, cleanly, as a worker that
    reached pebble's ``max_tasks`` does, and the pool starts a fresh one for the next cell."""

    def fetch_unless_tainted(*args: Any, **kwargs: Any) -> Any:
        if worker.replace_reasons:
            os._exit(0)
        return fetch_task(*args, **kwargs)

    return fetch_unless_tainted


def _initialize_worker(options: PluginOptions, threads: int, progress_queue: Any = None) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    import pebble.pool.process

    if hasattr(pebble.pool.process, "fetch_task"):
        pebble.pool.process.fetch_task = _exit_if_tainted(pebble.pool.process.fetch_task)
    else:  # a pebble whose worker loop changed: cells still get their state restored, workers are not replaced
        print("harness: cannot hook pebble's worker loop; workers will not be replaced", file=sys.stderr)
    threading.Thread(
        target=_exit_with_the_driver, args=(os.getppid(),), name="harness-driver-watch", daemon=True
    ).start()
    # Before any plugin imports torch or numpy: their thread pools read these once. Without it every worker
    # starts one thread per core and ``--jobs N`` oversubscribes the machine N times (OpenMP barriers then
    # make small networks tens of times slower). A value the user exported wins.
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, str(threads))
    registry_for(options)  # import plugins once, before the first cell, not inside its timing


def threads_per_worker(jobs: int) -> int:
    """CPU threads each worker may use so that ``jobs`` workers together use the machine's cores once."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


class LocalExecutor:
    """Runs cells on ``jobs`` worker processes of this machine."""

    name = "local"

    def __init__(
        self,
        jobs: int,
        plugin_options: PluginOptions,
        results_dir: Path,
        worker_options: WorkerOptions = WorkerOptions(),
    ) -> None:
        self.worker_options = worker_options
        self.jobs = max(1, jobs)
        self.plugin_options = plugin_options
        self.results_dir = str(results_dir)
        #: Receives each progress event of a running cell, on a driver thread (set by the runner).
        self.on_progress: Callable[[dict[str, Any]], None] | None = None
        # spawn, not fork: the driver runs a tracking thread, and forking a threaded process can deadlock.
        context = multiprocessing.get_context("spawn")
        self._progress: Any = context.Queue()
        self._pool = pebble.ProcessPool(
            max_workers=self.jobs,
            initializer=_initialize_worker,
            initargs=(plugin_options, threads_per_worker(self.jobs), self._progress),
            context=context,
        )
        self._reading = threading.Event()
        self._reader = threading.Thread(target=self._read_progress, name="harness-progress", daemon=True)
        self._reader.start()

    def _read_progress(self) -> None:
        while not self._reading.is_set():
            try:
                event = self._progress.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue was closed under us at shutdown
                return
            if self.on_progress is not None:
                try:
                    self.on_progress(event)
                except Exception:  # the display must never stop the run
                    pass

    def run(self, cells: Sequence[Cell]) -> Iterator[CellResult]:
        # Timeouts are enforced here on the monotonic clock, not by pebble (whose timeouts use the wall clock:
        # a clock stepped forward would kill every running cell): a cell is timed from when a worker takes it,
        # and cancelling a running pebble task kills its worker, as pebble's own timeout does.
        futures: dict[Any, tuple[Cell, float]] = {}
        order: dict[Any, int] = {}
        for cell in cells:
            future = self._pool.schedule(
                _run_cell, args=(cell, self.plugin_options, self.results_dir, self.worker_options)
            )
            futures[future] = (cell, time.time())
            order[future] = len(order)
        running_since: dict[Any, float] = {}
        pending = set(futures)
        while pending:
            done, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for waiting in pending - done:
                cell = futures[waiting][0]
                if waiting not in running_since and waiting.running():
                    running_since[waiting] = now
                elif waiting in running_since and cell.timeout_s and now - running_since[waiting] > cell.timeout_s:
                    waiting.cancel()
                    pending.discard(waiting)
                    reason = f"timeout: exceeded {cell.timeout_s:g} s"
                    yield failed_result(cell, reason, "Timeout", futures[waiting][1], self.results_dir)
            for finished in sorted(done, key=order.__getitem__):  # cells finished together: in the suite's order
                pending.discard(finished)
                yield from self._collect(finished, *futures[finished])

    def _collect(self, future: Any, cell: Cell, submitted: float) -> Iterator[CellResult]:
        """The result of a finished future, or a failed result saying why there is none."""
        try:
            yield future.result()
        except pebble.ProcessExpired as exc:
            reason = f"worker process {describe_exit(exc.exitcode)}"
            yield failed_result(cell, reason, "WorkerDied", submitted, self.results_dir)
        except CancelledError:
            yield failed_result(cell, "cancelled", "Cancelled", submitted)
        except Exception as exc:  # e.g. the cell could not be sent to or returned from the worker
            yield failed_result(cell, f"{type(exc).__name__}: {exc}", type(exc).__name__, submitted)
        except BaseException as exc:
            # Raised in the worker (pebble attaches its traceback as the cause), e.g. a SystemExit from a
            # plugin's code outside the cell's own guard: that cell's failure. The driver's own Ctrl-C or
            # SIGTERM has no remote cause and stops the run.
            if type(exc.__cause__).__name__ != "RemoteTraceback":
                raise
            reason = f"{type(exc).__name__} in the worker: {exc!r}"
            yield failed_result(cell, reason, type(exc).__name__, submitted, self.results_dir)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join()
        self._reading.set()
        self._reader.join(timeout=5)
        self._progress.close()
        self._progress.join_thread()
