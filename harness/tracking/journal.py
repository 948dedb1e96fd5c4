"""The local journal: every result is appended here, and fsynced, before anything goes to MLflow.

One JSON-lines file per suite and profile under ``results/journal/``. Lines are events:

* ``{"type": "run", "record": {...}}``: a suite run started (:class:`SuiteRunRecord`: configuration, cell
  keys, tracking URI, machine, git state).
* ``{"type": "parent", "run_id", "store", "config_id", "uri"}``: the MLflow parent run that holds the cells of
  one configuration in one store. ``store`` is the id the store holds (``mlflow-store:<uuid>``, see
  :attr:`harness.tracking.store.MlflowTracker.store`; earlier journals hold the URI's spelling), ``uri`` the
  spelling it was reached by, so ``sync`` can tell without connecting that nothing is left for that URI.
* ``{"type": "result", "record": {...}}``: one cell attempt's :class:`CellResult`. Written with ``fsync``
  before :meth:`Journal.append_result` returns, so a finished result survives a kill and a power loss.
* ``{"type": "synced", "record_id", "run_id", "store", "parent"}``: that result is in that store, under that
  parent, as run ``run_id``.
* ``{"type": "refused", "record_id", "store", "parent", "reason"}``: that store refused the record (a name it
  does not accept); it is not retried there, and it never holds back the others.
* ``{"type": "closed", "store", "parent"}``: that parent was finished in that store with the counts of what it
  holds (``incomplete`` when cells never ran). A parent with no such event was left running by a kill:
  ``sync`` finishes it, so a killed run is shown as incomplete, never as running forever or as complete.

A run killed at any point (or a full disk) leaves at most a truncated last line, which is ignored on reading;
the next append starts on a fresh line, so the cut line never swallows the event after it (an event glued onto
such a line by an older harness is recovered on reading). Any other line that cannot be read (damaged in the
middle of the file, not UTF-8, not an event) is skipped with a warning naming the file and line, and reading
goes on. The journal and its lock file are opened with ``O_NOFOLLOW``: a symlink planted in their place in a
shared results folder is refused, never written through. Deliveries are
tracked per store and parent: a result reaches every store it is sent to once, and MLflow is searched by
record id before delivering, so a result logged just before a kill is never logged twice. Journals of
schema version 1 (no stores or configurations in their events) are read as one configuration sent to the
store their last run named.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BadInput, ResultsFolderError
from harness.record import CellResult, SuiteRunRecord, latest_attempts

#: Events whose loss would lose a result: fsynced before ``append`` returns. Delivery marks are only
#: flushed (a lost mark costs a search in the store, never a duplicate).
DURABLE_EVENTS = frozenset({"run", "result"})

#: A cell's key as a result line writes it (the first "key" of a record is its cell's).
_CELL_KEY = re.compile(rb'"key":\s*"([0-9a-f]{20})"')


def _store(uri: str | None) -> str:
    from harness.tracking.uri import store_identity

    return store_identity(uri) if uri else ""


@dataclass
class JournalState:
    """What a journal file says, folded over its lines."""

    runs: list[SuiteRunRecord] = field(default_factory=list)
    parents: dict[tuple[str, str], str] = field(default_factory=dict)  # (store, config id) -> parent run id
    results: dict[str, CellResult] = field(default_factory=dict)  # record id -> result, in journal order
    deliveries: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (store, parent) -> rid -> run
    refused: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (store, parent) -> rid -> why
    store_ids: dict[str, set[str]] = field(default_factory=dict)  # URI spelling -> ids of stores reached by it
    closed: set[tuple[str, str]] = field(default_factory=set)  # (store, parent) finished with their counts
    unreadable_lines: int = 0
    #: (line number, why) of each line that could not be read and was skipped (a line cut short is not listed).
    damaged: list[tuple[int, str]] = field(default_factory=list)
    #: (line number, cell key if still legible) of each damaged line that held a cell's result.
    damaged_results: list[tuple[int, str | None]] = field(default_factory=list)

    def note_store(self, uri: str, store: str) -> None:
        self.store_ids.setdefault(_store(uri), set()).add(store)

    def stores_at(self, uri: str) -> set[str]:
        """The store keys this journal knows for ``uri``: the ids of stores it reached by that spelling, and
        the spelling itself (journals written before stores had ids)."""
        spelling = _store(uri)
        return {spelling, *self.store_ids.get(spelling, set())}

    def latest(self) -> dict[str, CellResult]:
        """Cell key -> its latest attempt (the result; earlier attempts are superseded), in journal order."""
        return latest_attempts(self.results.values(), key=lambda result: result.cell.key)

    def finished_keys(self) -> set[str]:
        """Cell keys whose latest attempt succeeded: skipped on resume."""
        return {key for key, result in self.latest().items() if result.status == "ok"}

    def configurations(self) -> list[SuiteRunRecord]:
        """The last run record of each configuration, in the order configurations first appeared."""
        found: dict[str, SuiteRunRecord] = {}
        for run in self.runs:
            found[run.config_id] = run
        return list(found.values())

    def results_of(self, run: SuiteRunRecord) -> list[CellResult]:
        """Every attempt of the cells of ``run``'s configuration (all results for a version-1 journal)."""
        if not run.cell_keys:
            return list(self.results.values())
        keys = set(run.cell_keys)
        return [result for result in self.results.values() if result.cell.key in keys]

    def pending(self, store: str, parent: str, run: SuiteRunRecord) -> list[CellResult]:
        """Results of ``run``'s configuration that ``store`` has neither received under ``parent`` nor refused.

        A parent's run id names one store, so marks under it count whichever key of that store (its id, or the
        URI spelling of an older journal) recorded them."""
        done = {rid for (_, known), marks in self.deliveries.items() if known == parent for rid in marks}
        refused = {rid for (_, known), marks in self.refused.items() if known == parent for rid in marks}
        return [r for r in self.results_of(run) if r.record_id not in done and r.record_id not in refused]

    def unclosed(self, stores: set[str], run: SuiteRunRecord) -> bool:
        """Whether ``run``'s configuration has a parent in one of ``stores`` that was never finished (a kill)."""
        for store in stores:
            parent = self.parents.get((store, run.config_id))
            if parent is not None and not any(known == parent for _, known in self.closed):
                return True
        return False

    def lost_results(self) -> list[tuple[int, str | None]]:
        """The damaged result lines whose cell has no readable result elsewhere in the journal: results lost
        (their cells run again on the next run; once one has, its line is no longer counted)."""
        readable = {result.cell.key for result in self.results.values()}
        return [(line, key) for line, key in self.damaged_results if key is None or key not in readable]

    def orphans(self) -> list[CellResult]:
        """Results whose cell belongs to no configuration the journal records (the line of their run record
        was lost): no parent run can be chosen for them, so they cannot be delivered."""
        if any(not run.cell_keys for run in self.runs):
            return []  # a version-1 run record names no cells: every result belongs to it
        known = {key for run in self.runs for key in run.cell_keys}
        return [result for result in self.results.values() if result.cell.key not in known]

    @property
    def tracking_uri(self) -> str | None:
        return self.runs[-1].tracking_uri if self.runs else None


class Journal:
    """Append-only and fsynced; safe to write from the result loop and the tracking thread at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: int | None = None  # an O_APPEND file descriptor, opened on the first append
        self._fresh_line_checked = False

    @classmethod
    def for_suite(cls, results_dir: Path, suite: str, profile: str, source: str = "suite run") -> Journal:
        from harness.paths import path_for

        return cls(path_for(results_dir / "journal", "{suite}--{profile}.jsonl", source, suite=suite, profile=profile))

    def read(self, warn: Callable[[str], None] | None = None) -> JournalState:
        """What the journal holds. A line that cannot be read is skipped and reported to ``warn`` (by default
        on stderr, once per line and process) with the file and line; a line cut short is skipped quietly."""
        state = JournalState()
        if not self.path.exists():
            return state
        # Version-1 events name no store or configuration: they belong to the latest run's store and parent.
        current = {"store": "", "parent": ""}
        with self.path.open("rb") as handle:  # bytes: a line that is not UTF-8 is one damaged line, no more
            for index, line in enumerate(handle):
                raw = line.rstrip(b"\n")
                if not raw.strip():
                    continue
                try:
                    event, glued = _parse_line(raw)
                    _fold(state, event, current)
                except ValueError as exc:
                    state.unreadable_lines += 1
                    if _is_cut(raw):
                        # Cut short by a kill or a full disk (the last line, or one a later run appended after):
                        # its write never completed, so nothing it held was ever confirmed.
                        continue
                    state.damaged.append((index + 1, str(exc)))
                    if b'"type":"result"' in raw or b'"type": "result"' in raw:
                        key = _CELL_KEY.search(raw)
                        state.damaged_results.append((index + 1, key.group(1).decode() if key else None))
                    _warn(warn, f"{self.path}:{index + 1}: skipped a damaged journal line ({exc}); the rest is read")
                    continue
                if glued:
                    state.unreadable_lines += 1  # the cut event the recovered one was glued onto
        return state

    def archive(self) -> Path | None:
        """Move the current journal aside (``--no-resume``); archived journals can still be synced."""
        if not self.path.exists():
            return None
        target = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%dT%H%M%S')}.jsonl")
        counter = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{counter}.jsonl")
            counter += 1
        self.path.rename(target)
        return target

    def append(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = _open_no_follow(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
                    self._fresh_line_checked = False
                if not self._fresh_line_checked:
                    # A kill or a full disk may have cut the last line: the event must not be glued onto it.
                    size = os.fstat(self._file).st_size
                    if size and os.pread(self._file, 1, size - 1) != b"\n":
                        data = b"\n" + data
                    self._fresh_line_checked = True
                _write_all(self._file, data)  # unbuffered: in the kernel on return, survives kill -9
                if event.get("type") in DURABLE_EVENTS:
                    # On the disk: survives a power loss. About 0.1 ms on this project's machines (RESULTS.md).
                    os.fsync(self._file)
            except OSError as exc:
                # The write may have left part of the line: check again before the next append.
                self._fresh_line_checked = False
                raise _write_error(self.path, exc, event) from None

    def append_run(self, run: SuiteRunRecord) -> None:
        self.append({"type": "run", "record": run.to_dict()})

    def append_parent(self, run_id: str, store: str, config_id: str, uri: str = "") -> None:
        event = {"type": "parent", "run_id": run_id, "store": store, "config_id": config_id}
        if uri:
            event["uri"] = uri
        self.append(event)

    def append_result(self, result: CellResult) -> None:
        self.append({"type": "result", "record": result.to_dict()})

    def mark_closed(self, store: str, parent: str) -> None:
        self.append({"type": "closed", "store": store, "parent": parent})

    def mark_synced(self, record_id: str, run_id: str, store: str, parent: str) -> None:
        self.append({"type": "synced", "record_id": record_id, "run_id": run_id, "store": store, "parent": parent})

    def mark_refused(self, record_id: str, store: str, parent: str, reason: str) -> None:
        self.append({"type": "refused", "record_id": record_id, "store": store, "parent": parent, "reason": reason})

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    os.fsync(self._file)
                except OSError as exc:
                    raise _write_error(self.path, exc, None) from None
                finally:
                    os.close(self._file)
                    self._file = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the journal's lock file for a whole run: two runs of one suite and profile would interleave."""
        lock_path = self.path.with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _open_no_follow(lock_path, os.O_RDWR | os.O_CREAT)
        with os.fdopen(descriptor, "r+", encoding="utf-8", errors="replace") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise BadInput(
                    f"{self.path} is in use by {owner}: another harness run of this suite and profile is "
                    "running. Wait for it, or use --results-dir to run separately."
                ) from None
            try:  # who holds the lock, for the message above: a note, which a full disk may refuse
                handle.seek(0)
                handle.truncate()
                handle.write(f"harness pid {os.getpid()}")
                handle.flush()
            except OSError:
                pass
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


_warned: set[str] = set()


def _warn(warn: Callable[[str], None] | None, message: str) -> None:
    if warn is not None:
        warn(message)
    elif message not in _warned:  # a journal is read more than once per command: say it once
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _parse_line(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The event on one line, and whether it was recovered from behind a cut event it was glued onto (an older
    harness appended after a cut line without starting a new one). Raises ``ValueError`` saying why not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text at byte {exc.start + 1}") from None
    try:
        return _as_event(json.loads(text)), False
    except json.JSONDecodeError as exc:
        start = text.rfind('{"type":')
        if start > 0:
            try:
                return _as_event(json.loads(text[start:])), True
            except ValueError:
                pass
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None


def _as_event(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError(f"not a journal event (a JSON object with a 'type'): {str(value)[:60]}")
    return value


def _is_cut(raw: bytes) -> bool:
    """Whether a line that does not parse is the start of an event a kill or a full disk cut short."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            return False
        text = raw[: exc.start].decode("utf-8", errors="replace")  # cut inside a multi-byte character
        raw = raw[: exc.start]
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        # Cut short, the text ends inside a string or where more was expected; damage stops it earlier.
        ends_early = exc.msg.startswith("Unterminated string") or exc.pos >= len(raw.rstrip())
        return raw.startswith(b'{"type":') and ends_early
    return False


def _fold(state: JournalState, event: dict[str, Any], current: dict[str, str]) -> None:
    """Add one event to ``state``; ``ValueError`` for an event whose fields are missing or malformed."""
    kind = event["type"]
    try:
        if kind == "run":
            run = SuiteRunRecord.from_dict(event.get("record", event))
            state.runs.append(run)
            current["store"] = _store(run.tracking_uri)
        elif kind == "parent":
            store = event.get("store", current["store"])
            config = event.get("config_id", "v1")
            state.parents[(store, config)] = str(event["run_id"])
            if event.get("uri"):
                state.note_store(str(event["uri"]), store)
            current["store"], current["parent"] = store, str(event["run_id"])
        elif kind == "result":
            result = CellResult.from_dict(event["record"])
            state.results[result.record_id] = result
        elif kind == "synced":
            where = (event.get("store", current["store"]), event.get("parent", current["parent"]))
            state.deliveries.setdefault(where, {})[str(event["record_id"])] = str(event["run_id"])
        elif kind == "refused":
            where = (event["store"], event["parent"])
            state.refused.setdefault(where, {})[str(event["record_id"])] = str(event.get("reason", ""))
        elif kind == "closed":
            state.closed.add((str(event["store"]), str(event["parent"])))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"a {kind!r} event that cannot be read ({detail})"[:300]) from None


def _open_no_follow(path: Path, flags: int) -> int:
    """A file descriptor on ``path``, refusing a symlink: in a shared results folder, someone else may have put
    a link where the journal or its lock goes, to make this run truncate or append to a file of theirs."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise ResultsFolderError(
                f"{path} is a symbolic link (to {os.readlink(path)}); the harness does not write its journal "
                "or lock files through links someone else could have planted in the results folder. Remove "
                "the link, or use a --results-dir only you can write to."
            ) from None
        raise ResultsFolderError(f"{path}: cannot open: {exc.strerror or exc}") from None


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _write_error(path: Path, exc: OSError, event: dict[str, Any] | None) -> ResultsFolderError:
    what = {"run": "the run's record", "result": "a cell's result"}.get(str((event or {}).get("type")), "an event")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
        fix = "Free space there (or pass --results-dir on another disk) and run the same command again"
    else:
        why = exc.strerror or str(exc)
        fix = "Fix that and run the same command again"
    return ResultsFolderError(
        f"{path}: could not write {what} to the journal: {why}. Every result journaled before is kept; "
        f"{fix}: finished cells are skipped, the others (this one too) run."
    )


def all_journals(results_dir: Path) -> list[Journal]:
    return [Journal(path) for path in sorted((results_dir / "journal").glob("*.jsonl"))]
