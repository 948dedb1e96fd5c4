"""Suite runs read back from MLflow: finding them (selectors) and loading them through the decoder.

The layout is written by :mod:`harness.tracking.store` (and by ``harness import pytest-benchmark``) and decoded
by :mod:`harness.tracking.layout`: one experiment per suite, one parent run per suite invocation carrying
``suite.json``, and one nested run per cell. Everything here works against any tracking URI through
:class:`mlflow.MlflowClient`.

Selectors (``harness report`` / ``compare`` arguments) name a suite run:

* a run id (a cell's run id selects its parent);
* ``latest`` (newest finished suite run), ``latest~N`` (the N-th before it);
* ``baseline`` (the newest promotion, ``harness promote``, of the suite and profile);
* ``KEY=VALUE`` (newest run with that tag, for example ``harness.git_commit=abc123``); ``source=TEXT`` is the
  newest run imported with ``--source TEXT`` (``harness import results``);
* a git commit of the code under test: its full SHA or a unique prefix of at least 7 characters (the newest
  run of that commit; a prefix that two commits share is refused with both named);
* a suite name (newest run of that suite's experiment).

``latest``, ``baseline`` and tags need a suite to look in: given with ``--suite``, or taken from the other
side of a comparison. A commit is looked for in the suite when one is given, else in every suite.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import BadInput
from harness.record import Alert, CellRun, SuiteRun, latest_attempts
from harness.tracking import layout
from harness.tracking.uri import sqlite_path
from harness.untrusted import visible

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_LATEST = re.compile(r"^latest(?:~(\d+))?$")
#: A commit of the code under test: git abbreviates to 7 hex digits, so a shorter prefix is not a commit.
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")


class RunStore:
    """Reads suite runs from one tracking URI."""

    def __init__(self, tracking_uri: str) -> None:
        path = sqlite_path(tracking_uri)
        if path is not None and not path.exists():
            raise BadInput(f"no MLflow store at {path}: run a suite first (harness run SUITE) or pass --tracking-uri")
        # Artifact downloads would otherwise draw a progress bar per cell on stderr.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.client = _GuardedClient(lambda: MlflowClient(tracking_uri=tracking_uri), tracking_uri)

    # -- finding runs ---------------------------------------------------------------------------------
    def experiment_id(self, suite: str) -> str:
        experiment = self.client.get_experiment_by_name(suite)
        if experiment is None:
            known = self.suite_names()
            raise BadInput(
                f"no suite named {suite!r} in {self.tracking_uri} (suites there: {', '.join(known) or 'none'})"
            )
        return experiment.experiment_id

    def suite_runs(
        self,
        suite: str,
        profile: str | None = None,
        extra_filter: str = "",
        finished_only: bool = True,
        include_reported: bool = False,
    ) -> list[Any]:
        """MLflow parent runs of ``suite``, newest first. Reported results (``harness import results``) are
        left out unless ``include_reported``: they are not runs of this harness, so never ``latest``, a
        baseline, a point of a trend or a calibration repeat; a selector by tag (``source=TEXT``) reaches them."""
        clauses = [layout.suite_runs_filter(profile)]
        if extra_filter:
            clauses.append(extra_filter)
        runs = self._search([self.experiment_id(suite)], " and ".join(clauses))
        if finished_only:
            runs = [run for run in runs if not layout.is_running(run)]
        if not include_reported:
            runs = [run for run in runs if not layout.is_reported(run)]
        return sorted(runs, key=lambda run: (layout.run_sequence(run), run.info.start_time or 0), reverse=True)

    def own_runs(self, suite: str, profile: str | None = None) -> list[Any]:
        """:meth:`suite_runs` without the runs made for another purpose (``harness calibrate``'s repeats,
        ``harness bisect``'s evaluations): what ``latest`` and a suite name select."""
        return [run for run in self.suite_runs(suite, profile) if not layout.purpose(run)]

    def _search(self, experiment_ids: list[str], filter_string: str) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                experiment_ids, filter_string=filter_string, max_results=5000, page_token=token
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

    def resolve(self, selector: str, suite: str | None = None, profile: str | None = None) -> str:
        """The run id of the suite run ``selector`` names (see the module docstring)."""
        selector = selector.strip()
        if _RUN_ID.match(selector):
            try:
                run = self.client.get_run(selector)
            except Exception as exc:
                # 32 hex digits may also be a commit prefix.
                found = self._by_commit(selector, suite, profile, required=False)
                if found:
                    return found
                raise BadInput(f"no run {selector} in {self.tracking_uri}: {exc}") from None
            if layout.is_cell_run(run):
                return layout.parent_run_id(run)
            if not layout.is_suite_run(run):
                raise BadInput(
                    f"run {selector} is not a harness suite run (no tag {layout.KIND}={layout.KIND_SUITE_RUN})"
                )
            return selector
        latest = _LATEST.match(selector)
        if latest or selector == "baseline" or "=" in selector:
            if not suite:
                raise BadInput(
                    f"{selector!r} needs a suite to look in: pass --suite NAME (or give a run id on the other side)"
                )
            if latest:
                runs = self.own_runs(suite, profile)
                index = int(latest.group(1) or 0)
                if index >= len(runs):
                    raise BadInput(f"{selector}: suite {suite!r} has only {len(runs)} finished run(s)")
                return runs[index].info.run_id
            if selector == "baseline":
                baseline = self.baseline_run_id(suite, profile)
                if baseline is None:
                    where = f"suite {suite!r}" + (f" profile {profile!r}" if profile else "")
                    raise BadInput(
                        f"no baseline in {where} (make one with: harness promote RUN, or harness nightly SUITE "
                        "--promote)"
                    )
                return baseline
            key, value = selector.split("=", 1)
            if key.strip() == "source":  # source=TEXT: imported results by where they came from
                key = layout.SOURCE
            runs = self.suite_runs(suite, profile, layout.tag_filter(key.strip(), value.strip()), include_reported=True)
            if not runs:
                where = f"suite {suite!r}" + (f" profile {profile!r}" if profile else "")
                raise BadInput(f"no run tagged {key.strip()}={value.strip()} in {where}")
            return runs[0].info.run_id
        if _COMMIT.match(selector):
            found = self._by_commit(selector, suite, profile, required=not self._is_suite(selector))
            if found:
                return found
        runs = self.own_runs(selector, profile)
        if not runs:
            raise BadInput(f"suite {selector!r} has no finished runs in {self.tracking_uri}")
        return runs[0].info.run_id

    def _is_suite(self, name: str) -> bool:
        return self.client.get_experiment_by_name(name) is not None

    def _experiments(self, suite: str | None) -> list[str]:
        """The suite's experiment, or every suite's when ``suite`` is None."""
        if suite:
            return [self.experiment_id(suite)]
        return [e.experiment_id for e in self._suite_experiments()]

    def _suite_experiments(self) -> list[Any]:
        """Every experiment that is a suite (not MLflow's Default, not the store's own identity)."""
        not_suites = {"Default", layout.STORE_EXPERIMENT}
        return [e for e in self.client.search_experiments() if e.name not in not_suites]

    def _by_commit(self, prefix: str, suite: str | None, profile: str | None, *, required: bool) -> str | None:
        """The newest suite run of the commit that ``prefix`` names (None when none has it and not ``required``)."""
        prefix = prefix.lower()
        experiments = self._experiments(suite)
        clauses = [layout.commit_prefix_filter(prefix)]
        if profile:
            clauses.append(layout.tag_filter(layout.PROFILE, profile))
        runs = self._search(experiments, " and ".join(clauses)) if experiments else []
        runs = [run for run in runs if not layout.is_running(run)]
        commits = sorted({run.data.tags.get(layout.GIT_COMMIT, "") for run in runs})
        where = f"suite {suite!r}" if suite else f"any suite in {self.tracking_uri}"
        if not runs:
            if required:
                raise BadInput(
                    f"no finished run of a commit starting {prefix} in {where} (a selector is a run id, latest, "
                    "baseline, KEY=VALUE, a suite name or a commit SHA of 7 or more hex digits)"
                )
            return None
        if len(commits) > 1:
            raise BadInput(
                f"commit prefix {prefix} is ambiguous in {where}: it starts {', '.join(commits)}; give more digits"
            )
        runs.sort(key=lambda run: (layout.run_sequence(run), run.info.start_time or 0), reverse=True)
        return str(runs[0].info.run_id)

    # -- baselines ------------------------------------------------------------------------------------
    def baseline_run_id(self, suite: str, profile: str | None = None, fingerprint: str | None = None) -> str | None:
        """The suite and profile's baseline (on the machine ``fingerprint``, if given): the newest promotion."""
        runs = self.suite_runs(suite, profile, layout.baseline_filter(fingerprint))
        if not runs:
            return None
        return str(max(runs, key=layout.promotion_order).info.run_id)

    def baseline_machines(self, suite: str, profile: str | None = None) -> dict[str, str]:
        """Fingerprint -> CPU of every machine that has a baseline of this suite and profile."""
        return {
            run.data.tags.get(layout.FINGERPRINT, ""): run.data.tags.get(f"{layout.MACHINE_PREFIX}cpu", "")
            for run in self.suite_runs(suite, profile, layout.baseline_filter())
        }

    def promote(self, run: SuiteRun, reason: str, when: float | None = None) -> None:
        """Make ``run`` the baseline of its suite, profile and machine, recording ``reason`` in MLflow.

        Refused for a run that is not a night of this machine's history (incomplete, a calibration repeat,
        imported results): its level is not one to compare against."""
        import time

        problem = run.history_problem
        if problem:
            raise BadInput(f"run {run.run_id} cannot be a baseline: it is {problem}")
        for key, value in layout.baseline_tags(reason, when if when is not None else time.time()).items():
            self.client.set_tag(run.run_id, key, value)

    def mark_baseline(self, run_id: str, reason: str = "") -> None:
        """Make ``run_id`` a baseline (the ``baseline`` selector takes the newest promotion)."""
        self.promote(self.load(run_id), reason)

    # -- alerts ---------------------------------------------------------------------------------------
    def alerts(
        self,
        suite: str | None = None,
        profile: str | None = None,
        fingerprint: str | None = None,
        state: str | None = None,
    ) -> list[Alert]:
        """Alerts (newest first) of ``suite`` (every suite when None), filtered by profile, machine and state."""
        experiments = self._experiments(suite)
        if not experiments:
            return []
        runs = self._search(experiments, layout.alerts_filter(profile, fingerprint, state))
        alerts = [layout.decode_alert(run) for run in runs]
        return sorted(alerts, key=lambda alert: (alert.opened_at_ms, alert.alert_id), reverse=True)

    def open_alert(self, alert: Alert, experiment_id: str) -> Alert:
        """Store a new alert (state open) in the suite's experiment; returns it with its id."""
        name = f"alert {alert.metric} {alert.algorithm}/{alert.environment}"[:250]
        created = self.client.create_run(experiment_id, tags=layout.alert_tags(alert), run_name=name)
        self.client.set_terminated(created.info.run_id, "FINISHED")
        alert.alert_id = created.info.run_id
        return alert

    def close_alert(self, alert: Alert) -> None:
        """Record ``alert``'s closing (its state, the run that closed it, the reason)."""
        for key, value in layout.alert_closing_tags(alert).items():
            self.client.set_tag(alert.alert_id, key, value)

    # -- loading --------------------------------------------------------------------------------------
    def load(self, run_id: str) -> SuiteRun:
        """The suite run with all its cells, metric values and curves."""
        parent = self.client.get_run(run_id)
        suite_info = self._artifact_json(run_id, layout.SUITE_JSON) or {}
        children = self._search([parent.info.experiment_id], layout.cells_of_filter(run_id))
        cells = latest_cell_runs(self._cell(child) for child in children)
        cells.sort(key=lambda c: (c.algorithm, c.environment, -1 if c.seed is None else c.seed))
        run = layout.decode_suite_run(parent, suite_info, cells, tracking_uri=self.tracking_uri)
        # Cells resumed from before a declared rename carry the old label: shown under the new one.
        return run.relabelled(run.renames)

    def _cell(self, run: Any) -> CellRun:
        if layout.needs_legacy_record(run):
            # Written before records carried a schema tag: the values come from the record artifact (the one
            # per-cell download, for old runs only).
            record = self._artifact_json(run.info.run_id, layout.CELL_JSON)
            if record:
                return layout.decode_cell(run, legacy_record=record)
        curve_names = sorted(k for k in run.data.metrics if k.startswith(layout.CURVE_PREFIX))
        return layout.decode_cell(run, self._curves_from_history(curve_names))

    def _curves_from_history(self, keys: list[str]) -> Any:
        if not keys:
            return None

        def load(cell: CellRun) -> dict[str, list[tuple[int, float]]]:
            return {
                key.removeprefix(layout.CURVE_PREFIX): sorted(
                    (int(m.step), float(m.value)) for m in self.client.get_metric_history(cell.run_id, key)
                )
                for key in keys
            }

        return load

    def _artifact_json(self, run_id: str, path: str) -> Any:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = self.client.download_artifacts(run_id, path, tmp)
                return json.loads(Path(local).read_text())
        except Exception:  # absent artifact: the caller falls back to tags and metrics
            return None

    def history(
        self, suite: str, profile: str | None, limit: int = 60, fingerprint: str | None = None
    ) -> list[SuiteRun]:
        """The newest ``limit`` nights of a suite and profile (on the machine ``fingerprint``, if given), oldest
        first: finished, complete runs of its own (:attr:`SuiteRun.history_problem` names what is left out)."""
        clause = layout.tag_filter(layout.FINGERPRINT, fingerprint) if fingerprint else ""
        nights: list[SuiteRun] = []
        for found in self.suite_runs(suite, profile, clause):
            if len(nights) >= limit:
                break
            tags = found.data.tags
            if tags.get(layout.PURPOSE) or tags.get(layout.SOURCE):
                continue  # calibration repeats and imported results: known without loading the cells
            run = self.load(found.info.run_id)
            if not run.history_problem:
                nights.append(run)
        return nights[::-1]

    def suite_names(self) -> list[str]:
        """The suites (experiments) this store holds, sorted."""
        return sorted(e.name for e in self._suite_experiments())

    def summaries(self, suite: str) -> list[SuiteRun]:
        """Every finished suite run of ``suite``, oldest first, decoded from the parent runs alone (no cells:
        fast enough for a year of nights); :meth:`aggregates` has each one's per-case values."""
        runs = self.suite_runs(suite)
        return [layout.decode_suite_run(run, {}, [], tracking_uri=self.tracking_uri) for run in reversed(runs)]

    def aggregates(self, run_id: str) -> dict[tuple[str, str, str], tuple[float, float, int]]:
        """(algorithm, environment, metric) -> (mean, std, n) of a finished suite run (its ``aggregates.json``)."""
        return layout.decode_aggregates(self._artifact_json(run_id, layout.AGGREGATES_JSON))

    def suite_info(self, run_id: str) -> dict[str, Any]:
        """A suite run's ``suite.json`` (metric declarations, thresholds, ...); empty when it has none."""
        return self._artifact_json(run_id, layout.SUITE_JSON) or {}

    def attach_report(self, run_id: str, paths: Iterable[Path]) -> None:
        """Keep a written report with its suite run (artifacts under ``report/``); a store that refuses
        artifacts (read-only, no artifact root) loses nothing: the files are on disk."""
        for path in paths:
            try:
                self.client.log_artifact(run_id, str(path), layout.REPORT_DIR)
            except Exception as exc:
                logging.getLogger("harness").warning("report not attached to run %s: %s", run_id, visible(exc))

    def ui_command(self) -> str:
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


def database_problem(exc: BaseException) -> str | None:
    """The database error somewhere in ``exc``'s chain (sqlite3's or SQLAlchemy's, as MLflow raises them), as
    one line; None when the failure is not the database's."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.DatabaseError):
            return str(current).strip() or type(current).__name__
        module = type(current).__module__ or ""
        if module.startswith("sqlalchemy") and type(current).__name__ in ("DatabaseError", "OperationalError"):
            original = getattr(current, "orig", None)
            return str(original if original is not None else current).splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


def store_error(tracking_uri: str, problem: str) -> BadInput:
    """The error for a store whose database cannot be read: the file, what the database said, what to do."""
    path = sqlite_path(tracking_uri)
    if path is None:
        return BadInput(f"MLflow at {tracking_uri}: its database failed: {problem}")
    return BadInput(
        f"{path}: not a readable MLflow store ({problem}). The file may be damaged (a full disk, a copy cut "
        f"short). Move it aside and run `harness sync --tracking-uri sqlite:///{path}` to rebuild it from the "
        "journal, or pass --tracking-uri to read another store."
    )


class _GuardedClient:
    """An :class:`mlflow.MlflowClient` whose database errors become :class:`BadInput` naming the store file,
    instead of a SQLAlchemy traceback from the middle of ``report`` or ``export``."""

    def __init__(self, make: Any, tracking_uri: str) -> None:
        self._tracking_uri = tracking_uri
        self._client = self._guard(make)()

    def _guard(self, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except BadInput:
                raise
            except Exception as exc:
                problem = database_problem(exc)
                if problem is None:
                    raise
                raise store_error(self._tracking_uri, problem) from None

        return call

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        return self._guard(attribute) if callable(attribute) else attribute


def latest_cell_runs(cells: Iterable[CellRun]) -> list[CellRun]:
    """The latest attempt of each cell key (by the sequence its delivery recorded, then start time: never the
    wall clock alone, which can step back); attempts tagged superseded never count (report, compare, nightly)."""
    live = [cell for cell in cells if not cell.superseded]
    order = lambda c: (-1 if c.sequence is None else c.sequence, c.start_time_ms)  # noqa: E731
    return list(latest_attempts(live, key=lambda c: c.cell_key or c.run_id, order=order).values())
