"""The commits ``harness bisect`` walks and how one of them is measured: git, worktrees, an isolated run.

* **The range**: ``git rev-list --ancestry-path GOOD..BAD`` in order, so every commit is a descendant of GOOD
  and an ancestor of BAD (a merged side branch that did not lead to BAD is not a suspect).
* **A worktree per evaluation**: ``git worktree add --detach`` into a temporary folder, removed in ``finally``.
  The user's checkout is never touched (neither its files nor its HEAD), so a dirty checkout stays as it is.
* **The code at that commit on the import path**: the evaluation is a child process (``python -m
  harness.run.bisect``) whose ``PYTHONPATH`` starts with the worktree and its ``src/`` (a pure-Python package),
  with entries inside the user's checkout dropped so its own copy cannot stand in for a missing module; its
  working directory is the worktree. ``--install-cmd`` runs first in the worktree for code that needs a build
  (it installs into the current environment, as ``pip install -e .`` does).
* **A normal run**: the child runs the suite through :func:`harness.run.runner.run_suite` with ``--repo`` the
  worktree, so MLflow records that commit's SHA; its purpose is :data:`harness.record.PURPOSE_BISECT`, which
  keeps it out of nightly history and trends. Its journal and logs go to ``<results-dir>/bisect/``.
* **Reuse**: a stored run of the same suite and profile whose ``git_commit`` is that SHA, clean (not dirty),
  complete, a run of its own or an earlier bisect (not a calibration repeat, not imported), on this machine
  (same fingerprint), holding every selected cell ok with the same params (the suite expanded here with this
  bisect's profile, ``--set`` and ``--only``), and whose cells' code versions
  (:mod:`harness.run.code_version`) are those of the same cells at that commit: its values count as one
  evaluation. The commit pins the repository under test but not the code beside it (the harness, another
  package's environment or metric), so the code versions at the commit are computed before anything is reused:
  the suite expanded in a child process with the commit's worktree first on the import path (after
  ``--install-cmd``), which imports the plugins but runs nothing. When they cannot be computed, nothing stored
  is reused for that commit and it is measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.bisect import CannotEvaluate
from harness.errors import BadInput

#: The child's last line of stdout starts with this, followed by a JSON object.
RESULT_MARKER = "HARNESS_BISECT_RESULT "
#: How much of a failing evaluation's stderr is quoted.
_TAIL = 1500


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:12]

    def to_dict(self) -> dict[str, str]:
        return {"sha": self.sha, "subject": self.subject}


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120, check=False)


def resolve_commit(repo: Path, revision: str, option: str) -> Commit:
    """The commit ``revision`` names in ``repo`` (full SHA and subject); :class:`BadInput` naming it otherwise."""
    found = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    if found.returncode != 0 or not found.stdout.strip():
        raise BadInput(
            f"{option} {revision!r} is not a commit of {repo} (a SHA, a prefix of one, a branch or a tag; "
            "`git log --oneline` lists them)"
        )
    sha = found.stdout.strip()
    return Commit(sha, git(repo, "log", "-1", "--format=%s", sha).stdout.strip())


def checkout_problem(repo: Path) -> str:
    """Why ``repo`` is not a git checkout with a commit ("" when it is one)."""
    if not repo.is_dir():
        return f"--repo {repo}: no such folder"
    if git(repo, "rev-parse", "--verify", "--quiet", "HEAD").returncode != 0:
        return f"--repo {repo}: not a git checkout with a commit"
    return ""


def uncommitted_changes(repo: Path) -> list[str]:
    """Tracked files with uncommitted changes (what makes a checkout dirty; untracked files do not)."""
    status = git(repo, "status", "--porcelain", "--untracked-files=no").stdout
    return [line[3:] for line in status.splitlines() if line.strip()]


def commit_range(repo: Path, good: Commit, bad: Commit) -> list[Commit]:
    """The commits after ``good`` up to ``bad`` (inclusive), oldest first; :class:`BadInput` when ``good`` is
    not a proper ancestor of ``bad``."""
    if good.sha == bad.sha:
        raise BadInput(f"--good and --bad are the same commit ({good.short}): nothing to search")
    if git(repo, "merge-base", "--is-ancestor", good.sha, bad.sha).returncode != 0:
        swapped = git(repo, "merge-base", "--is-ancestor", bad.sha, good.sha).returncode == 0
        hint = " (it is the other way round: swap --good and --bad)" if swapped else ""
        raise BadInput(f"--good {good.short} is not an ancestor of --bad {bad.short}{hint}")
    listed = git(repo, "log", "--reverse", "--ancestry-path", "--format=%H%x1f%s", f"{good.sha}..{bad.sha}")
    commits = [Commit(*line.split("\x1f", 1)) for line in listed.stdout.splitlines() if "\x1f" in line]
    if not commits or commits[-1].sha != bad.sha:
        raise BadInput(f"git found no path of commits from {good.short} to {bad.short}: {listed.stderr.strip()}")
    return commits


@contextlib.contextmanager
def worktree(repo: Path, commit: Commit) -> Iterator[Path]:
    """A detached worktree of ``commit`` in a temporary folder, removed afterwards whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=f"harness-bisect-{commit.short}-"))
    added = git(repo, "worktree", "add", "--detach", str(folder), commit.sha)
    try:
        if added.returncode != 0:
            raise CannotEvaluate(f"git worktree add failed: {added.stderr.strip()}")
        yield folder
    finally:
        git(repo, "worktree", "remove", "--force", str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        git(repo, "worktree", "prune")


def _within(path: str, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def import_path(checkout: Path, repo: Path) -> str:
    """PYTHONPATH of an evaluation: the worktree (and its ``src/``) first, then the current entries that are not
    inside the user's checkout (a module missing at this commit must not be found there instead)."""
    first = [str(checkout)] + ([str(checkout / "src")] if (checkout / "src").is_dir() else [])
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and not _within(p, repo.resolve())]
    return os.pathsep.join(first + kept)


#: A cell of the configuration being bisected: (algorithm label, environment label, seed).
CellSlot = tuple[str, str, int | None]


def expected_cells(cells: Sequence[Any]) -> dict[CellSlot, dict[str, str]]:
    """The params a stored run's cells must carry to measure the configuration of ``cells`` (the suite expanded
    with the profile, ``--set`` and ``--only`` of this bisect)."""
    from harness.tracking.layout import cell_config_params

    return {(cell.algorithm_label, cell.environment_label, cell.seed): dict(cell_config_params(cell)) for cell in cells}


def values_of(
    run: Any,
    metric: str,
    expected: dict[CellSlot, dict[str, str]] | None,
    code: dict[CellSlot, dict[str, str]] | None = None,
) -> dict[tuple[str, str], list[float]] | None:
    """The ok cells' values of ``metric`` by case: every cell of ``run`` (``expected`` None), or the cells of
    the expected configuration, provided the run holds all of them with the same params and, given ``code``,
    the same code versions (else None)."""
    values: dict[tuple[str, str], list[float]] = {}
    found: set[CellSlot] = set()
    for cell in run.ok_cells:
        if metric not in cell.metrics:
            continue
        if expected is not None:
            slot = (cell.algorithm, cell.environment, cell.seed)
            params = expected.get(slot)
            if params is None:
                continue
            if any(cell.params.get(key) != value for key, value in params.items()):
                return None  # the same cell with other params: another configuration
            if code is not None and cell.code_versions != code.get(slot):
                return None  # the same cell measured with other code beside the commit
            found.add(slot)
        values.setdefault(cell.case, []).append(float(cell.metrics[metric]))
    if expected is not None and found != set(expected):
        return None
    return values


@dataclass
class Evaluator:
    """Measures commits of ``repo``: stored runs first (:meth:`stored`), else a run in a worktree (:meth:`run`)."""

    repo: Path
    suite_path: Path
    suite: str
    profile: str
    metric: str
    tracking_uri: str
    results_dir: Path
    fingerprint: str
    only: tuple[str, ...] = ()
    #: The configuration a stored run must have measured to be reused (None: stored runs are not reused).
    expected: dict[CellSlot, dict[str, str]] | None = None
    modules: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    install_cmd: str | None = None
    timeout_s: float | None = None
    reuse: bool = True
    notify: Callable[[str], None] = lambda message: None
    #: The metric's threshold as the runs measured so far declare it (suite override applied); None before one.
    declared_threshold: float | None = None

    def _store(self) -> Any:
        from harness.tracking.reader import RunStore

        return RunStore(self.tracking_uri)

    def stored(self, commit: Commit) -> tuple[list[dict[tuple[str, str], list[float]]], list[str]]:
        """Values of the stored runs this bisect may reuse for ``commit``, one dict per run, with their run ids
        (see the module docstring)."""
        if not self.reuse or not self.expected:
            return [], []
        from harness.record import PURPOSE_BISECT
        from harness.tracking import layout

        try:
            store = self._store()
            found = store.suite_runs(self.suite, self.profile, layout.tag_filter(layout.GIT_COMMIT, commit.sha))
        except BadInput:
            return [], []  # no store or no run of this suite yet
        candidates = []
        for summary in found:
            run = store.load(summary.info.run_id)
            if run.git_dirty or not run.complete or run.is_imported or run.purpose not in ("", PURPOSE_BISECT):
                continue
            if run.fingerprint == self.fingerprint and values_of(run, self.metric, self.expected):
                candidates.append(run)
        if not candidates:
            return [], []
        try:
            code = self.code_at(commit)
        except CannotEvaluate as exc:
            self.notify(f"{commit.short}: stored runs not reused, the code versions at this commit are unknown ({exc})")
            return [], []
        runs: list[dict[tuple[str, str], list[float]]] = []
        run_ids: list[str] = []
        for run in candidates:
            own = values_of(run, self.metric, self.expected, code)
            if not own:
                self.notify(f"{commit.short}: stored run {run.run_id[:8]} not reused, its code versions differ")
                continue
            self._declared(run)
            runs.append(own)
            run_ids.append(run.run_id)
        return runs, run_ids

    def _child(self, checkout: Path, commit: Commit, *extra: str) -> subprocess.CompletedProcess[str]:
        """``python -m harness.run.bisect`` on this bisect's suite with ``checkout`` (the worktree of ``commit``)
        first on the import path, after ``--install-cmd``; its own process group, ended whole on timeout."""
        env = dict(os.environ)
        env["PYTHONPATH"] = import_path(checkout, self.repo)
        env.pop("PYTHONSAFEPATH", None)
        if self.install_cmd:
            self.notify(f"{commit.short}: {self.install_cmd}")
            installed = _run_group(self.install_cmd, shell=True, cwd=checkout, env=env, timeout=self.timeout_s)
            if installed.returncode != 0:
                tail = (installed.stdout + installed.stderr).strip()[-_TAIL:]
                raise CannotEvaluate(f"--install-cmd failed with exit {installed.returncode}: {tail}")
        command = [sys.executable, "-m", "harness.run.bisect", str(self.suite_path), "--repo", str(checkout),
                   "--profile", self.profile, "--tracking-uri", self.tracking_uri,
                   "--results-dir", str(self.results_dir / "bisect"), *extra]  # fmt: skip
        for flag, given in (("--only", self.only), ("-p", self.modules), ("--set", self.overrides)):
            for value in given:
                command += [flag, value]
        return _run_group(command, cwd=checkout, env=env, timeout=self.timeout_s)

    def code_at(self, commit: Commit) -> dict[CellSlot, dict[str, str]]:
        """The code versions of the selected cells at ``commit``: the suite expanded, nothing run."""
        with worktree(self.repo, commit) as checkout:
            done = self._child(checkout, commit, "--code-versions")
        result = _child_result(done.stdout)
        if result is None or not isinstance(result.get("code_versions"), list):
            raise CannotEvaluate(f"exit {done.returncode}: {_what_went_wrong(done.stderr)}")
        return {(alg, env, seed): versions for alg, env, seed, versions in result["code_versions"]}

    def run(self, commit: Commit) -> tuple[dict[tuple[str, str], list[float]], str]:
        """One run of the selected cells at ``commit``, recorded in MLflow: (values by case, run id)."""
        with worktree(self.repo, commit) as checkout:
            done = self._child(checkout, commit)
        result = _child_result(done.stdout)
        if result is None or not result.get("run_id"):
            raise CannotEvaluate(f"the run stopped with exit {done.returncode}: {_what_went_wrong(done.stderr)}")
        run = self._store().load(result["run_id"])
        self._declared(run)
        values = values_of(run, self.metric, None) or {}
        if not values:
            failed = [cell for cell in run.cells if cell.status != "ok"]
            why = failed[0].error.strip().splitlines()[-1] if failed and failed[0].error.strip() else ""
            problems = "; ".join(result.get("problems") or [])
            raise CannotEvaluate(
                f"no selected cell measured {self.metric} (run {run.run_id[:8]}: {len(failed)} cell(s) failed"
                + (f": {why}" if why else "")
                + (f"; plugin problems: {problems}" if problems else "")
                + ")"
            )
        return values, run.run_id

    def _declared(self, run: Any) -> None:
        if self.declared_threshold is None and self.metric in run.metric_info:
            self.declared_threshold = float(run.info(self.metric).threshold)


def _what_went_wrong(stderr: str) -> str:
    """The lines of a failed evaluation's stderr that say why (its errors and plugin problems), else its end."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    told = [line for line in lines if line.startswith(("error:", "plugin problem:"))]
    return " | ".join(told or lines[-5:])[-_TAIL:] or "no output"


def _run_group(command: Any, *, timeout: float | None, **options: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new process group, the whole group killed on timeout: a run's workers and an
    install's compilers do not outlive the evaluation that gave up on them."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **options
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            stopped = "stopped, with every process it started"
            raise CannotEvaluate(f"it took longer than {timeout:g} s ({stopped})") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _child_result(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                parsed = json.loads(line[len(RESULT_MARKER) :])
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """One evaluation, in its own process (so each commit's code is imported fresh): run the suite, print the
    run id after :data:`RESULT_MARKER`. Exit 2 on bad input (a plugin that does not import lands here)."""
    import argparse

    from harness.plugins import PluginOptions, load_plugins
    from harness.record import PURPOSE_BISECT
    from harness.run.discovery import resolve_suite
    from harness.run.runner import RunOptions, run_suite
    from harness.run.selection import select_cells

    parser = argparse.ArgumentParser(prog="python -m harness.run.bisect", description=main.__doc__)
    parser.add_argument("suite")
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("-p", dest="modules", action="append", default=[])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--code-versions", action="store_true", help="print the selected cells' code versions")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    registry = load_plugins(PluginOptions(extra_modules=tuple(args.modules)))
    problems = [f"{problem.plugin}: {problem.stage}: {problem.message}" for problem in registry.problems]
    for problem in problems:
        say(f"plugin problem: {problem}")
    try:
        suite = resolve_suite(args.suite, registry)
        if args.code_versions:
            _, cells = suite.expand(registry, args.profile, tuple(args.overrides))
            selected = select_cells(cells, tuple(args.only), str(suite.path))
            versions = [[c.algorithm_label, c.environment_label, c.seed, c.code_versions] for c in selected]
            print(RESULT_MARKER + json.dumps({"code_versions": versions, "problems": problems}), flush=True)
            return 0
        options = RunOptions(
            profile=args.profile, tracking_uri=args.tracking_uri, results_dir=args.results_dir, resume=False,
            overrides=tuple(args.overrides), only=tuple(args.only), repository=args.repo, purpose=PURPOSE_BISECT,
        )  # fmt: skip
        summary = run_suite(suite, registry, options, notify=say)
    except BadInput as exc:
        say(f"error: {exc}")
        print(RESULT_MARKER + json.dumps({"run_id": None, "problems": problems}), flush=True)
        return 2
    if summary.tracking_error:
        say(f"error: the run did not reach MLflow: {summary.tracking_error}")
    print(RESULT_MARKER + json.dumps({"run_id": summary.parent_run_id, "problems": problems}), flush=True)
    return summary.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
