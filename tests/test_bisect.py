"""``harness bisect`` end to end: a small library in its own git repository, the real command, a real MLflow store.

``toylib`` sleeps a module constant; each commit sets it. The plugin module (``toylib_plugin``, in the same
repository) imports it at import time, so a commit where ``toylib`` is broken is a commit where the plugin does
not import. Timings come from sleeps: real, and far apart compared with this shared machine's noise.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from toylib_support import commit_toylib as commit
from toylib_support import git, make_project
from toylib_support import harness as toylib_harness

from harness.analysis.bisect import CannotEvaluate, Search, Undecided

TOYLIB = "SECONDS = {seconds}\n"

PLUGIN = """
import time

import toylib

from harness import AlgorithmSpec, EnvironmentSpec, hookimpl

HARNESS_API_VERSION = "1.0"


def run_work(*, environment, params, context):
    time.sleep(toylib.SECONDS)
    return {}


def make_env(*, params, context):
    return None


@hookimpl
def harness_algorithms():
    return [AlgorithmSpec(name="work", version="1", description="calls the library", task_kinds=("toy",),
                          run="toylib_plugin:run_work")]


@hookimpl
def harness_environments():
    return [EnvironmentSpec(name="bench", version="1", description="nothing", task_kind="toy",
                            make="toylib_plugin:make_env")]
"""

SUITE = """
name = "toy-bisect"
description = "a library's speed, commit by commit"
seeds = [0, 1, 2]
metrics = ["wall_time_s"]
algorithms = ["work"]
environments = ["bench"]
repository = "repo"

[profiles.smoke]
"""

FAST, SLOW = 0.1, 0.12  # a 20% slowdown


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, PLUGIN, SUITE)


def harness(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command, with the user's checkout on the import path as in the nightly tests."""
    return toylib_harness(project, *args, timeout=600)


def bisect(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return harness(project, "bisect", "toy.toml", *args)


@pytest.mark.slow
def test_bisect_names_the_commit_of_a_slowdown_within_the_bound_reusing_nightly_history(project: Path):
    repo = project / "repo"
    shas = []
    for number in range(1, 17):
        shas.append(commit(repo, TOYLIB.format(seconds=SLOW if number >= 11 else FAST), f"commit {number}"))
        if number in (1, 6, 12, 16):  # nightly history on some commits; night 12 opens the alert
            night = harness(project, "nightly", "toy.toml", "--promote")
            assert night.returncode == (1 if number == 12 else 0), night.stdout + night.stderr
            if number == 12:
                opened_night = night.stdout
    before = git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")

    # The alert names the command that finds its commit: good = the baseline's commit (night 6), bad = night 12.
    listed = harness(project, "alerts", "toy-bisect", "--json")
    assert listed.returncode == 0, listed.stderr
    (alert,) = json.loads(listed.stdout)
    assert alert["bisect"] == (
        f"harness bisect toy-bisect --profile smoke --good {shas[5]} --bad {shas[11]} --metric wall_time_s "
        "--only algorithm=work,environment=bench"
    )
    table = harness(project, "alerts", "toy-bisect")
    assert alert["bisect"] in table.stdout
    assert f"find its commit: {alert['bisect']}" in opened_night  # the night that opened it says so too
    pages = project / "results" / "reports" / "nightly-toy-bisect-smoke"
    assert alert["bisect"] in (pages / "index.html").read_text()  # and the regressions page of the nights since
    assert alert["bisect"].replace("_", "\\_") in (pages / "report.md").read_text()

    from_alert = harness(project, *alert["bisect"].split()[1:], "--json")
    assert from_alert.returncode == 0, from_alert.stdout + from_alert.stderr
    found = json.loads(from_alert.stdout)
    assert found["first_bad"] == {"sha": shas[10], "subject": "commit 11"}
    assert found["last_good"]["sha"] == shas[9]
    # 6 commits after the good one: ceil(log2(6)) + 2 = 5; good and bad come from the nightly runs.
    assert found["evaluation_bound"] == 5 and found["evaluations"] <= 5
    reused = {row["sha"] for row in found["evaluated"] if row["reused_runs"]}
    assert {shas[5], shas[11]} <= reused
    assert found["clean_step"] is True and found["confidence"] > 0.8
    # The noise behind that confidence: the seeds' spread, and whether the drift of whole runs was measured.
    assert set(found["noise"]) == {"work/bench"} and found["noise"]["work/bench"]["within_run_sd"] > 0
    assert found["drift_measured"] == found["noise"]["work/bench"]["drift_measured"]
    effect = found["effect"]
    assert 0.1 < effect["relative_change"] < 0.35 and effect["low"] <= effect["relative_change"] <= effect["high"]
    assert effect["low"] > 0

    # The whole range of 16 commits, as text: commit 11 within ceil(log2(15)) + 2 = 6 evaluations, reusing the
    # nights and the alert's bisect (its runs are stored with their commits).
    # With --measure-drift the good and bad commits are measured in two runs each (2 more evaluations at most).
    whole = bisect(project, "--good", shas[0][:9], "--bad", "HEAD", "--measure-drift")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert f"first bad commit: {shas[10]} commit 11" in whole.stdout
    assert "a clean step" in whole.stdout
    made = int(whole.stdout.split("evaluated (")[1].split(" run(s)")[0])
    assert made <= 6 + 2 and "a clean step needs at most 8" in whole.stdout
    assert "no commit was measured in two runs" not in whole.stdout
    assert "reusing stored run" in whole.stderr

    # The user's checkout was never touched, no worktree was left behind, and no bisect run became a night.
    assert (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")) == before
    assert git(repo, "worktree", "list").count("\n") == 0
    trend = harness(project, "nightly", "toy.toml")
    assert "still open: wall_time_s" in trend.stdout, trend.stdout + trend.stderr


def test_bisect_refuses_bad_revisions_a_reversed_range_and_a_dirty_checkout(project: Path):
    repo = project / "repo"
    first = commit(repo, TOYLIB.format(seconds=FAST), "fast")
    last = commit(repo, TOYLIB.format(seconds=SLOW), "slow")

    unknown = bisect(project, "--good", "nosuchrev", "--bad", last)
    assert unknown.returncode == 2 and "--good 'nosuchrev' is not a commit" in unknown.stderr, unknown.stderr

    reversed_range = bisect(project, "--good", last, "--bad", first)
    assert reversed_range.returncode == 2, reversed_range.stderr
    assert "is not an ancestor of --bad" in reversed_range.stderr and "swap --good and --bad" in reversed_range.stderr

    (repo / "toylib.py").write_text(TOYLIB.format(seconds=0.5))
    dirty = bisect(project, "--good", first, "--bad", last)
    assert dirty.returncode == 2 and "uncommitted changes (toylib.py)" in dirty.stderr, dirty.stderr
    assert (repo / "toylib.py").read_text() == TOYLIB.format(seconds=0.5)  # left as it was


@pytest.mark.slow
def test_bisect_never_names_a_commit_it_could_not_measure(project: Path):
    repo = project / "repo"
    good = commit(repo, TOYLIB.format(seconds=FAST), "fast")
    commit(repo, TOYLIB.format(seconds=FAST), "still fast")
    broken = commit(repo, "raise ImportError('toylib: half-finished refactoring')\n", "broken build, and slow")
    after = commit(repo, TOYLIB.format(seconds=SLOW), "slow")
    commit(repo, TOYLIB.format(seconds=SLOW), "still slow")
    bad = commit(repo, TOYLIB.format(seconds=SLOW), "still slow too")

    result = bisect(project, "--good", good, "--bad", bad, "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["first_bad"] is None
    assert f"the first bad commit is one of {broken[:12]}" in answer["reason"] and after[:12] in answer["reason"]
    (skipped,) = [row for row in answer["evaluated"] if row["problem"]]
    assert skipped["sha"] == broken and "half-finished refactoring" in skipped["problem"]
    assert "cannot be evaluated" in result.stderr


@pytest.mark.slow
def test_bisect_says_when_nothing_changed_between_good_and_bad(project: Path):
    repo = project / "repo"
    good = commit(repo, TOYLIB.format(seconds=FAST), "one")
    for number in range(2, 5):
        bad = commit(repo, TOYLIB.format(seconds=FAST), f"commit {number}")
    # --install-cmd runs in each commit's worktree before it is measured.
    installed = project / "installed.txt"
    result = bisect(project, "--good", good, "--bad", bad, "--install-cmd", f"git rev-parse HEAD >> {installed}")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no change between good and bad" in result.stderr and "first bad commit" not in result.stdout
    assert installed.read_text().split() == [good, bad]


@pytest.mark.slow
def test_an_evaluation_past_its_timeout_is_stopped_with_every_process_it_started(project: Path):
    import time

    repo = project / "repo"
    good = commit(repo, TOYLIB.format(seconds=FAST), "one")
    bad = commit(repo, TOYLIB.format(seconds=SLOW), "two")
    pid_file = project / "install.pid"
    hung = f"sleep 300 & echo $! > {pid_file}; wait"  # an install whose build step hangs in a grandchild
    result = bisect(project, "--good", good, "--bad", bad, "--install-cmd", hung, "--timeout", "3", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "took longer than 3 s" in result.stdout + result.stderr
    pid = int(pid_file.read_text())
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(50):  # the group was sent SIGKILL: gone, or a zombie its new parent has not reaped yet
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the install's grandchild {pid} outlived the evaluation's timeout")


# -- the decision rule on hand-made numbers ----------------------------------------------------------------
CASE = ("work", "bench")


def search(levels: list[float], *, noise: float = 0.01, broken: frozenset[int] = frozenset(), repeats: int = 3,
           seeds: int = 3) -> tuple[Search, list[int]]:  # fmt: skip
    """A search over commits whose true levels are ``levels`` (index 0 the good commit), measured with
    deterministic noise of size ``noise``; returns it and the indices it measured."""
    measured: list[int] = []
    spread = [noise * (k - (seeds - 1) / 2) for k in range(seeds)]

    def measure(index: int) -> tuple[dict, str]:
        measured.append(index)
        if index + 1 in broken:
            raise CannotEvaluate("does not import")
        return {CASE: [levels[index + 1] + d for d in spread]}, f"run{len(measured)}"

    return Search(len(levels) - 1, measure, lambda index: ([], []), threshold=0.05, repeats=repeats), measured


def test_a_clean_step_is_found_within_the_bound():
    for step in range(1, 16):
        found, measured = search([1.0] * step + [1.2] * (16 - step))
        outcome = found.run()
        assert outcome.first_bad + 1 == step and outcome.clean_step
        assert len(measured) <= math.ceil(math.log2(15)) + 2


def test_two_smaller_steps_are_not_a_clean_step():
    found, _ = search([1.0] * 5 + [1.1] * 5 + [1.2] * 6, noise=0.002)
    outcome = found.run()
    assert not outcome.clean_step and 0.3 < outcome.step_fraction < 0.7
    assert any(place.intermediate for place in outcome.positions.values())


def test_a_commit_too_close_to_call_is_measured_again():
    found, measured = search([1.0] * 8 + [1.1] + [1.2] * 7, noise=0.05)
    found.run()
    assert len(measured) > len(set(measured))  # repeats of the ambiguous commit
    assert max(measured.count(index) for index in set(measured)) <= 3


def test_no_change_and_unmeasurable_endpoints_are_undecided():
    with pytest.raises(Undecided, match="no change between good and bad"):
        search([1.0] * 8, noise=0.01)[0].run()
    with pytest.raises(Undecided, match=r"the good commit .* cannot be evaluated"):
        search([1.0] * 4 + [1.2] * 4, broken=frozenset({0}))[0].run()


def test_a_stored_run_is_reused_only_with_every_selected_cell_and_the_same_params():
    from types import SimpleNamespace

    from harness.run.bisect import values_of

    def cell(seed: int, size: str, value: float) -> SimpleNamespace:
        params = {"algorithm": "work", "environment": "bench", "seed": str(seed), "algorithm.size": size}
        return SimpleNamespace(algorithm="work", environment="bench", seed=seed, case=CASE, params=params,
                               metrics={"wall_time_s": value})  # fmt: skip

    expected = {("work", "bench", seed): {"seed": str(seed), "algorithm.size": "8"} for seed in (0, 1)}
    same = SimpleNamespace(ok_cells=[cell(0, "8", 1.0), cell(1, "8", 1.1), cell(2, "8", 9.0)])
    assert values_of(same, "wall_time_s", expected) == {CASE: [1.0, 1.1]}  # seed 2 is not selected
    other_params = SimpleNamespace(ok_cells=[cell(0, "16", 1.0), cell(1, "16", 1.1)])
    assert values_of(other_params, "wall_time_s", expected) is None
    missing_a_cell = SimpleNamespace(ok_cells=[cell(0, "8", 1.0)])
    assert values_of(missing_a_cell, "wall_time_s", expected) is None
    # The same commit and params, but code beside the commit (another package's environment) changed since.
    code = {slot: {"algorithm": "a1", "environment": "e1"} for slot in expected}
    for stored in same.ok_cells:
        stored.code_versions = {"algorithm": "a1", "environment": "e1"}
    assert values_of(same, "wall_time_s", expected, code) == {CASE: [1.0, 1.1]}
    same.ok_cells[1].code_versions = {"algorithm": "a1", "environment": "e2"}
    assert values_of(same, "wall_time_s", expected, code) is None


def test_the_drift_of_whole_runs_is_estimated_beside_the_seeds_spread():
    from harness.analysis.bisect import CommitLevel, pooled_noise

    level = CommitLevel(0)
    level.add({CASE: [1.00, 1.01, 0.99]})
    level.add({CASE: [1.10, 1.11, 1.09]})  # the same commit, the next run: 10% away, far beyond the seeds
    noise = pooled_noise([level], CASE)
    assert noise.within == pytest.approx(0.01) and noise.freedom == 4 and noise.between_freedom == 1
    # Run means 1.00 and 1.10: mean square 0.005, of which the seeds explain 0.01^2 / 3.
    assert noise.between == pytest.approx(math.sqrt(0.005 - 0.0001 / 3))
    assert noise.variance_of_mean(level, CASE) == pytest.approx(0.0001 / 6 + noise.between**2 / 2)
    steady = CommitLevel(1)
    steady.add({CASE: [1.0, 1.01, 0.99]})
    steady.add({CASE: [1.0, 1.01, 0.99]})
    assert pooled_noise([steady], CASE).between == 0.0  # runs that agree: no drift beyond the seeds


def test_a_confidence_counts_the_drift_of_runs_once_it_is_measured():
    from itertools import cycle

    levels = [1.0] * 5 + [1.2] * 5  # commit 5 (index 4) is the first bad one
    spread = [-0.001, 0.0, 0.001]  # seeds agree to 0.1%; whole runs land 5% high or low

    def run(measure_drift: bool) -> tuple:
        drift = cycle([0.05, -0.05, 0.0])

        def measure(index: int) -> tuple[dict, str]:
            offset = next(drift)
            return {CASE: [levels[index + 1] * (1 + offset) + d for d in spread]}, "run"

        found = Search(len(levels) - 1, measure, lambda index: ([], []), threshold=0.05, measure_drift=measure_drift)
        return found, found.run()

    _, seeds_only = run(measure_drift=False)
    assert seeds_only.first_bad == 4 and not seeds_only.drift_measured
    assert seeds_only.confidence > 0.999  # what the seeds alone claim
    search_with_drift, with_drift = run(measure_drift=True)
    assert with_drift.first_bad == 4 and with_drift.drift_measured
    assert search_with_drift.levels[-1].evaluations == 2 and search_with_drift.levels[8].evaluations == 2
    assert with_drift.noise[CASE].between > 0.04
    assert with_drift.confidence < 0.99  # the same answer, no longer claimed as certain
