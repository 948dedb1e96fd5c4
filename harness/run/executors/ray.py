"""The Ray executor: each cell a Ray task, placed by the resources its specs declare.

Only the driver talks to MLflow; a task returns its :class:`CellResult` and nothing else. Each task is a
streaming generator that first yields where it started (host, pid) and then the result, so the driver knows
when a cell really began (a queued task's timeout must not run) and which worker to name when it dies.

Failures, and what becomes of them:

* the cell raises: the worker returns a failed result like the local executor's (never retried);
* the worker process or its node dies mid-cell (``kill -9``, out of memory, a lost machine): the cell is
  submitted again, at most ``max_retries`` more times, then recorded failed with every death's reason;
* the cell runs past its ``timeout_s``: its task is cancelled with ``force=True`` (which kills that worker)
  and the cell is recorded failed, not retried;
* no node of the cluster can ever satisfy the cell: a cell needing a GPU on a cluster without one is
  recorded skipped, as the local executor does when a spec's requirements are missing.

Retries are the driver's, not Ray's (``max_retries=0`` on the task): the driver then numbers the attempts
(``CellResult.attempt``) and keeps the reason of each death. Each cell's result is yielded exactly once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.exceptions

from harness.errors import BadInput
from harness.plugins import PluginOptions, registry_for
from harness.record import Cell, CellResult, WorkerOptions
from harness.run.executors import failed_result
from harness.run.worker import execute_cell, worker_name
from harness.untrusted import visible

log = logging.getLogger("harness.run.executors.ray")

# Errors that mean the process running the cell went away, not that the cell itself failed: worth a retry.
_WORKER_LOST = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
)

# How often the driver wakes up to check timeouts when no result arrives.
_POLL_S = 0.5


@ray.remote(num_returns="streaming", max_retries=0)
def _run_cell_task(
    cell: Cell,
    plugin_options: PluginOptions,
    results_dir: str,
    attempt: int,
    worker_options: WorkerOptions,
    progress_queue: Any = None,
) -> Iterator[dict[str, Any] | CellResult]:
    yield {"worker": worker_name(), "node": ray.get_runtime_context().get_node_id()}
    progress = progress_queue.put_nowait if progress_queue is not None else None
    yield execute_cell(cell, plugin_options, results_dir, attempt, progress=progress, worker_options=worker_options)


@dataclass
class CellResources:
    """What one cell asks Ray for: both specs run in one process, so CPUs and GPUs are shared, memory adds."""

    cpus: float
    gpus: float
    memory_mb: int

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_mb > 0:
            options["memory"] = self.memory_mb * 1024 * 1024
        return options


def cell_resources(
    cell: Cell, plugin_options: PluginOptions, cluster_has_gpu: bool = False, device: str = "auto"
) -> CellResources:
    """The resources the cell's algorithm and environment specs declare.

    A cell that can use a GPU asks Ray for one under ``--device cuda``, and under ``--device auto`` when the
    cluster has GPUs: Ray hides the GPUs from a task that did not ask for one.
    """
    registry = registry_for(plugin_options)
    algorithm = registry.get("algorithm", cell.algorithm.name).spec.resources
    environment = registry.get("environment", cell.environment.name).spec.resources
    gpus = max(algorithm.gpus, environment.gpus)
    wants_gpu = device == "cuda" or (device == "auto" and cluster_has_gpu)
    if gpus == 0 and wants_gpu and (algorithm.uses_gpu or environment.uses_gpu):
        gpus = 1.0
    return CellResources(
        cpus=max(algorithm.cpus, environment.cpus),
        gpus=gpus,
        memory_mb=algorithm.memory_mb + environment.memory_mb,
    )


@dataclass
class _Attempt:
    cell: Cell
    number: int
    submitted_at: float
    started_at: float | None = None  # wall clock, for the record
    started_monotonic: float | None = None  # for its timeout: a stepped wall clock must not expire it
    worker: str = ""
    deaths: list[str] = field(default_factory=list)  # reasons of earlier attempts' worker deaths


def worker_runtime_env() -> dict[str, Any]:
    """What workers need to import what the driver imports: its PYTHONPATH (``-p`` modules outside site-packages)
    and the ``HARNESS_*`` settings plugins read. Ray itself adds the driver's working directory to workers'
    ``sys.path``. On a multi-machine cluster these paths must exist on every node (a shared file system), or
    the plugins must be installed there.
    """
    env_vars = {key: value for key, value in os.environ.items() if key.startswith("HARNESS_")}
    python_path = [str(Path(entry).resolve()) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if python_path:
        env_vars["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    return {"env_vars": env_vars} if env_vars else {}


def join_failure_message(address: str, exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc}" + (f" ({type(cause).__name__}: {str(cause).splitlines()[-1][:300]})" if cause else "")
    hint = f"Is it running (`ray status --address {address}`)?"
    if "auth" in detail.lower() or os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        hint += (
            " Ray clusters use token authentication by default, and a driver joining by address must opt in: "
            "set RAY_AUTH_MODE=token and provide the cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN or "
            "RAY_AUTH_TOKEN_PATH; `ray get-auth-token` on the head prints it)."
        )
    return f"--address {address}: could not join the Ray cluster: {detail}. {hint}"


class RayExecutor:
    """Runs cells as Ray tasks on an existing cluster (``address``, else ``$RAY_ADDRESS``) or a new local one.

    If this process is already connected to Ray (``ray.init`` was called), that connection is used as is.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None,
        plugin_options: PluginOptions,
        results_dir: Path,
        max_retries: int = 2,
        worker_options: WorkerOptions = WorkerOptions(),
    ) -> None:
        self.worker_options = worker_options
        # Workers do not see the driver's environment: decide autoload here, not from each worker's variables.
        self.plugin_options = dataclasses.replace(plugin_options, autoload=plugin_options.autoload_enabled)
        self.results_dir = str(Path(results_dir).resolve())
        self.max_retries = max(0, max_retries)
        self.address = address
        self._owns_connection = False
        self._in_flight: dict[Any, _Attempt] = {}
        #: Receives each progress event of a running cell (set by the runner); events travel through a Ray
        #: queue actor, at most two a second per cell, and are drained by the driver's polling loop.
        self.on_progress: Any = None
        self._progress_queue: Any = None
        # Ray prints its error messages (a worker died, a task cannot be scheduled) on the driver's stdout,
        # which belongs to `harness run --json`: while Ray is in use here, they go to stderr with the progress.
        self._saved_stdout = sys.stdout
        sys.stdout = sys.stderr
        try:
            self._connect(address)
        except BaseException:
            sys.stdout = self._saved_stdout
            raise

    def _connect(self, address: str | None) -> None:
        if not ray.is_initialized():
            common: dict[str, Any] = {
                "runtime_env": worker_runtime_env(),
                "log_to_driver": False,
                "logging_level": logging.WARNING,
                "configure_logging": True,
            }
            address = address or os.environ.get("RAY_ADDRESS") or None
            if address:
                try:
                    ray.init(address=address, **common)
                except ConnectionError as exc:
                    raise BadInput(join_failure_message(address, exc)) from None
            else:
                # "local": a new instance even when `ray start` left a cluster running on this machine (Ray
                # would join that one). One CPU per core, so a cell's declared cpus mean what they say.
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **common)
            self._owns_connection = True

    def _node_capacities(self) -> list[dict[str, float]]:
        return [node["Resources"] for node in ray.nodes() if node.get("Alive")]

    def _placement_problem(self, resources: CellResources, nodes: list[dict[str, float]]) -> tuple[str, str] | None:
        """(status, reason) for a cell no node can ever run; None if some node can."""
        if resources.gpus > 0 and not any(node.get("GPU", 0) > 0 for node in nodes):
            return "skipped", f"needs {resources.gpus:g} GPU(s) and no node of the Ray cluster has a GPU"
        for node in nodes:
            if (
                node.get("CPU", 0) >= resources.cpus
                and node.get("GPU", 0) >= resources.gpus
                and node.get("memory", 0) >= resources.memory_mb * 1024 * 1024
            ):
                return None
        largest = max(nodes, key=lambda node: node.get("CPU", 0), default={})
        return "failed", (
            f"needs {resources.cpus:g} CPU(s), {resources.gpus:g} GPU(s), {resources.memory_mb} MB memory, more "
            f"than any node of the Ray cluster has (largest: {largest.get('CPU', 0):g} CPUs, "
            f"{largest.get('GPU', 0):g} GPUs, {largest.get('memory', 0) / 2**20:.0f} MB); lower the spec's "
            "Resources or add a bigger node"
        )

    def _submit(self, attempt: _Attempt, resources: CellResources) -> None:
        task = _run_cell_task.options(**resources.ray_options(), name=f"harness:{attempt.cell.label}")
        generator = task.remote(
            attempt.cell,
            self.plugin_options,
            self.results_dir,
            attempt.number,
            self.worker_options,
            self._progress_queue,
        )
        self._in_flight[generator] = attempt

    def _drain_progress(self) -> None:
        if self._progress_queue is None or self.on_progress is None:
            return
        try:
            events = self._progress_queue.get_nowait_batch(self._progress_queue.qsize())
        except Exception:  # the queue actor went away with its node: progress is a convenience
            return
        for event in events:
            try:
                self.on_progress(event)
            except Exception:
                pass

    def run(self, cells: Sequence[Cell]) -> Iterator[CellResult]:
        if self.on_progress is not None and self._progress_queue is None:
            from ray.util.queue import Queue

            self._progress_queue = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
        nodes = self._node_capacities()
        cluster_has_gpu = any(node.get("GPU", 0) > 0 for node in nodes)
        resources_of: dict[str, CellResources] = {}
        for cell in cells:
            resources = cell_resources(cell, self.plugin_options, cluster_has_gpu, self.worker_options.device)
            problem = self._placement_problem(resources, nodes)
            if problem is not None:
                status, reason = problem
                result = failed_result(cell, reason, "Unschedulable" if status == "failed" else "CellSkipped")
                result.status = status  # type: ignore[assignment]
                yield result
                continue
            resources_of[cell.key] = resources
            self._submit(_Attempt(cell, 1, time.time()), resources)
        while self._in_flight:
            generators = list(self._in_flight)
            ready, _ = ray.wait(generators, num_returns=1, timeout=_POLL_S)
            if ready:  # collect everything else that is ready too, without waiting
                ready, _ = ray.wait(generators, num_returns=len(generators), timeout=0)
            self._drain_progress()
            for generator in ready:
                received = self._receive(generator, resources_of)
                if received is not None:
                    yield received
            yield from self._expire_timeouts()

    def _receive(self, generator: Any, resources_of: dict[str, CellResources]) -> CellResult | None:
        """Take the next item of a ready task; a result (final) or None (started, or resubmitted)."""
        attempt = self._in_flight[generator]
        cell = attempt.cell
        try:
            item = ray.get(next(generator))
        except StopIteration:  # cannot happen before the result; treat as a lost worker
            item = ray.exceptions.WorkerCrashedError()
        except Exception as exc:
            item = exc
        if isinstance(item, dict):  # the task started on a worker
            attempt.started_at = time.time()
            attempt.started_monotonic = time.monotonic()
            attempt.worker = f"{item['worker']} (node {item['node'][:12]})"
            return None
        del self._in_flight[generator]
        if isinstance(item, CellResult):
            return item
        if isinstance(item, _WORKER_LOST):
            where = f"worker {attempt.worker}" if attempt.worker else "the worker"
            reason = f"attempt {attempt.number}: {where} died mid-cell ({type(item).__name__})"
            deaths = [*attempt.deaths, reason]
            if attempt.number <= self.max_retries:
                log.warning("%s: %s; retrying", visible(cell.label), visible(reason))
                retry = _Attempt(cell, attempt.number + 1, time.time(), deaths=deaths)
                self._submit(retry, resources_of[cell.key])
                return None
            result = failed_result(
                cell, f"worker died {len(deaths)} time(s), giving up: " + "; ".join(deaths), "WorkerDied"
            )
        elif isinstance(item, ray.exceptions.TaskCancelledError):
            result = failed_result(cell, "cancelled", "Cancelled")
        else:  # e.g. the cell could not be sent to or returned from the worker; harness not importable there
            result = failed_result(cell, f"{type(item).__name__}: {item}", type(item).__name__)
        result.attempt = attempt.number
        result.worker = attempt.worker or result.worker
        if attempt.started_at is not None:
            result.started_at = attempt.started_at
        return result

    def _expire_timeouts(self) -> Iterator[CellResult]:
        now = time.monotonic()
        for generator, attempt in list(self._in_flight.items()):
            timeout = attempt.cell.timeout_s
            if not timeout or attempt.started_monotonic is None or now - attempt.started_monotonic <= timeout:
                continue
            ray.cancel(generator, force=True)  # kills the worker process: a hung native call cannot hold it
            del self._in_flight[generator]
            result = failed_result(attempt.cell, f"timeout: exceeded {timeout:g} s", "Timeout", attempt.started_at)
            result.attempt = attempt.number
            result.worker = attempt.worker
            yield result

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for generator in list(self._in_flight):
                try:
                    ray.cancel(generator, force=True)
                except Exception as exc:  # already finished, or the cluster is gone: nothing left to stop
                    log.debug("cancel failed: %s", exc)
        self._in_flight.clear()
        try:
            if self._owns_connection and ray.is_initialized():
                ray.shutdown()  # a local instance stops; a joined cluster keeps running, only this driver leaves
        finally:
            sys.stdout = self._saved_stdout


__all__ = ["CellResources", "RayExecutor", "cell_resources", "worker_runtime_env"]
