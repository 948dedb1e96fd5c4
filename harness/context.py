"""The context the runner hands to every environment, algorithm and metric of one cell.

It carries everything a plugin needs from the harness, so that no plugin imports MLflow, Ray or the runner:
the seed, the device, the profile's budget, a deadline, a checkpoint folder that survives a crash of the
cell, a shared cache folder and a function to log curves.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where a cell asks for a generator, not with the API
    import numpy as np

#: Seconds between two progress events of one cell (a changed note or completed work is sent at once).
PROGRESS_INTERVAL_S = 0.5


@dataclass
class CellContext:
    """Per-cell facts and services.

    Attributes:
        seed: the cell's seed; python, numpy and torch are already seeded with it when ``make`` is called.
        device: ``"cpu"`` or ``"cuda"``: ``"cuda"`` for a spec needing GPUs (``Resources(gpus=1)``), and for one
            that can use a GPU (``Resources(uses_gpu=True)``) when the run's ``--device`` allows it and a GPU
            is visible; move models and tensors there.
        budget: the profile's budget, free-form (for example ``{"gradient_steps": 1000, "eval_episodes": 5}``);
            plugins read the keys they understand and fall back to their own defaults.
        profile: the name of the budget profile (``smoke``, ``short``, ``full`` or a suite's own).
        deadline: wall-clock time (``time.time()``) after which the runner kills the cell; ``inf`` if none. For
            the time left, use :meth:`time_left`: it counts on the monotonic clock.
        checkpoint_dir: a folder unique to this cell (by cell key) that is kept between attempts, so a long
            cell killed half way can resume from its last checkpoint.
        cache_dir: a folder shared by all cells, for artifacts worth reusing across cells (trained
            full-precision models, generated datasets), keyed by the plugin's own config hash.
        cell: names and resolved parameters of the cell (``algorithm``, ``environment``, ``seed``,
            ``algorithm_params``, ``environment_params``, ``key``).
        measurements: free-form values written by ``harness_execute_cell`` wrappers (timers, memory probes)
            for metrics to read.
        inputs: the datasets the cell read, recorded with :meth:`log_input`.

    Long loops report how far they are with :meth:`progress`; the run display shows it live.
    """

    seed: int
    device: str = "cpu"
    budget: Mapping[str, Any] = field(default_factory=dict)
    profile: str = "smoke"
    deadline: float = math.inf
    checkpoint_dir: Path = field(default_factory=lambda: Path("results/checkpoints/_"))
    cache_dir: Path = field(default_factory=lambda: Path("results/cache"))
    cell: Mapping[str, Any] = field(default_factory=dict)
    measurements: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, int, float]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # The resolved callables of this cell (``make``, ``run``) and the made environment; runner-internal.
    components: dict[str, Any] = field(default_factory=dict, repr=False)
    _checked_names: set[str] = field(default_factory=set, repr=False)
    #: Where :meth:`progress` sends its events (the executor's channel to the driver); None: nowhere.
    progress_sink: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    _progress_sent: float = field(default=0.0, repr=False)
    _progress_note: str = field(default="", repr=False)
    #: The deadline on the monotonic clock (``time.monotonic()``), which :meth:`time_left` uses: a wall clock
    #: stepped by NTP or by hand must not shorten or stretch a cell's time.
    _monotonic_deadline: float | None = field(default=None, repr=False)

    def progress(self, done: float, total: float | None = None, note: str = "") -> None:
        """Say how far the cell's work is: ``done`` of ``total`` units (gradient steps, environment steps, QAT
        steps), with a phase ``note`` ("generating dataset", "evaluating").

        Cheap enough to call every step: an event leaves the worker at most twice a second (immediately when
        the note changes or the work completes), so the run display can show each running cell's bar, phase and
        an overall ETA that keeps moving. Without a display (in-process checks) it does nothing.
        """
        sink = self.progress_sink
        if sink is None:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if note == self._progress_note and not finished and now - self._progress_sent < PROGRESS_INTERVAL_S:
            return
        self._progress_sent, self._progress_note = now, note
        try:
            sink({"key": self.cell.get("key", ""), "done": float(done), "total": total, "note": str(note)})
        except Exception:  # the display is a convenience; the cell's work must never fail because of it
            self.progress_sink = None

    def log(self, name: str, value: float, step: int) -> None:
        """Record one point of a curve (for example a score over training steps).

        Curves become MLflow metric histories under ``curve/<name>``; the last value of each curve is also
        available to metrics through ``outcome`` only if the algorithm puts it there. ``name`` must be a name
        MLflow accepts (letters, digits, ``_ - . : /`` and spaces): another raises :class:`ValueError` here,
        at the call that made it, rather than failing the delivery of the whole result later.
        """
        name = str(name)
        if name not in self._checked_names:
            from harness.record import name_problem

            problem = name_problem(name)
            if problem:
                raise ValueError(f"context.log({name!r}, ...): curve name refused: {problem}")
            self._checked_names.add(name)
        try:
            point = (name, int(step), float(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise type(exc)(
                f"context.log({name!r}, {str(value)[:60]}, step={str(step)[:30]}): the curve's value must be a "
                f"number and its step an integer ({exc})"
            ) from exc
        self.history.append(point)

    def log_input(
        self,
        name: str,
        *,
        origin: str,
        path: str = "",
        sha256: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a dataset the cell read: where it came from, so its results say which data they are of.

        Args:
            name: the dataset's name as users know it (``hopper-medium-replay-v2``).
            origin: who made it: ``"d4rl"``, ``"minari"``, ``"generated"`` or a plugin's own word. Reports flag
                every result whose data is ``generated``, so it never passes for the original benchmark's.
            path: the file read (empty for data built in memory).
            sha256: the file's hash (:func:`harness.context.file_sha256` computes it, cached per file).
            details: JSON-compatible facts (generator, budget, seed, rows) kept with the record.
        The runner logs each input to MLflow as a dataset input of the cell's run and as tags.
        """
        self.inputs.append(
            {
                "name": str(name),
                "origin": str(origin),
                "path": str(path),
                "sha256": str(sha256),
                "details": dict(details or {}),
            }
        )

    @contextlib.contextmanager
    def shared_setup(self, note: str) -> Iterator[None]:
        """Mark work done for every cell that will reuse it (a dataset generated into ``cache_dir``, a trained
        full-precision model): its time is recorded as the cell's ``shared_setup_s``, kept out of timings such
        as ``wall_time_s`` so it is not charged to whichever cell came first, and ``note`` shows as the phase.
        """
        self.progress(0, None, note)
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.measurements["shared_setup_s"] = self.measurements.get("shared_setup_s", 0.0) + spent

    def time_left(self) -> float:
        """Seconds until the deadline (``inf`` without one): long loops should stop and checkpoint before it."""
        if self._monotonic_deadline is not None:
            return self._monotonic_deadline - time.monotonic()
        return self.deadline - time.time()

    def budget_value(self, key: str, default: Any) -> Any:
        """``budget[key]`` if the profile sets it, else ``default``."""
        return self.budget.get(key, default)

    def numpy_rng(self, stream: int = 0) -> np.random.Generator:
        """A numpy ``Generator`` seeded from the cell's seed and a stream number (independent streams)."""
        import numpy as np

        return np.random.default_rng([self.seed, stream])

    def cell_dir(self) -> Path:
        """The checkpoint folder, created on first use."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self.checkpoint_dir


@functools.cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, computed once per process for each (path, size, modification time)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
