"""Nightly verdicts over many nights, end to end through the real `harness` command and a real MLflow store.

The code under test is a small library in its own git repository (``toylib``: one algorithm that sleeps a
module constant and reports a quality constant). Each "commit" of it changes a constant; each night is a real
``harness nightly --repo`` run recording that commit. Timings come from sleeps, so they are real but not
sensitive to how busy this shared machine is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toylib_support import SUITE, TOYLIB, commit, harness, make_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def night(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return harness(project, "nightly", "toy.toml", "--promote", *extra)


def alerts(project: Path, state: str = "open") -> list[dict]:
    listed = harness(project, "alerts", "toy-life", "--state", state, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return json.loads(listed.stdout)


@pytest.mark.slow
def test_a_regression_fails_its_night_only_stays_open_and_closes_when_accepted(project: Path):
    repo = project / "repo"
    first = commit(repo, 0.15, 1.0, "fast and good")
    one = night(project)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "no baseline yet" in one.stderr and "promoted" in one.stdout
    assert f"commit {first[:12]}" in one.stdout  # the repository under test's commit, not the harness's

    slow = commit(repo, 0.18, 1.0, "slower allocator")  # night k: a 20% slowdown
    k = night(project)
    assert k.returncode == 1, k.stdout + k.stderr
    assert "NEW REGRESSION: wall_time_s work/bench +" in k.stdout and "not promoted" in k.stdout
    assert slow[:12] in k.stdout

    after = night(project)  # the same slow code the next night: open, not new, and the night passes
    assert after.returncode == 0, after.stdout + after.stderr
    assert "still open: wall_time_s" in after.stdout and "NEW REGRESSION" not in after.stdout
    assert "not promoted: alerts are open" in after.stdout
    (opened,) = alerts(project)
    assert opened["metric"] == "wall_time_s" and opened["opened_commit"] == slow
    # The range to bisect: the last night before it (its commit) to the night it appeared.
    assert opened["previous_commit"] == first and f"--good {first} --bad {slow}" in opened["bisect"]
    assert 0.1 < opened["relative_change"] < 0.35 and opened["low"] <= opened["relative_change"] <= opened["high"]
    # --fail-on-open keeps failing while it is open.
    strict = harness(project, "nightly", "toy.toml", "--fail-on-open")
    assert strict.returncode == 1, strict.stdout + strict.stderr

    worse = commit(repo, 0.18, 0.8, "quality drop")  # a second, different regression: new, not mixed in
    second = night(project)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "NEW REGRESSION: quality work/bench" in second.stdout
    assert "still open: wall_time_s" in second.stdout and "NEW REGRESSION: wall_time_s" not in second.stdout

    # Accepting the slow allocator's level (a night before the quality drop) leaves the later alert open.
    partial = harness(project, "promote", slow[:9], "--reason", "the allocator's cost is accepted", "--json")
    assert partial.returncode == 0, partial.stdout + partial.stderr
    promoted = json.loads(partial.stdout)
    assert [a["metric"] for a in promoted["closed"]] == ["wall_time_s"]
    assert [a["metric"] for a in promoted["still_open"]] == ["quality"]
    assert [a["metric"] for a in alerts(project)] == ["quality"]

    # Accept the new level by a commit prefix, with a reason recorded in MLflow.
    accepted = harness(project, "promote", worse[:9], "--reason", "new model, accepted")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "accepted: quality work/bench" in accepted.stdout and "still open" not in accepted.stdout
    assert alerts(project) == []
    closed = {a["metric"]: a["reason"] for a in alerts(project, "accepted")}
    assert closed == {"wall_time_s": "the allocator's cost is accepted", "quality": "new model, accepted"}

    later = night(project)
    assert later.returncode == 0, later.stdout + later.stderr
    assert "no alert" in later.stdout and "promoted" in later.stdout

    # The trend names nights and commits, never run indices.
    report = (project / "results" / "reports" / "nightly-toy-life-smoke" / "report.md").read_text()
    assert "trend of quality" in report and "run(s) [" not in report and worse[:8] in report


@pytest.mark.slow
def test_a_killed_then_synced_run_is_incomplete_never_a_baseline_and_not_a_night(project: Path):
    repo = project / "repo"
    commit(repo, 0.15, 1.0, "base")
    assert night(project).returncode == 0
    (project / "toy.toml").write_text(SUITE.replace("seeds = [0, 1, 2, 3, 4, 5]", "seeds = [0, 1, 2, 3, 4, 5, 6, 7]"))
    commit(repo, 1.0, 1.0, "slow cells, so the kill lands mid-run")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "harness.cli.main", "-p", "toylib_plugin", "run", "toy.toml", "--no-resume",
               "--results-dir", "results"]  # fmt: skip
    journal = project / "results" / "journal" / "toy-life--smoke.jsonl"
    archived = len(list(journal.parent.glob("toy-life--smoke.*.jsonl")))
    process = subprocess.Popen(command, cwd=project, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    # --no-resume archives the first night's journal, then the killed run's results go to a fresh one.
    while (
        len(list(journal.parent.glob("toy-life--smoke.*.jsonl"))) == archived
        or not journal.exists()
        or journal.read_text().count('"type":"result"') < 2
    ):
        assert time.monotonic() < deadline and process.poll() is None, "the run ended before it was killed"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    synced = harness(project, "sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    report = harness(project, "report", "latest", "--suite", "toy-life", "--format", "md", "--out", "killed")
    assert report.returncode == 0, report.stdout + report.stderr
    text = (project / "killed" / "report.md").read_text()
    assert "never ran: INCOMPLETE" in text
    refused = harness(project, "promote", "latest", "--suite", "toy-life")
    assert refused.returncode == 2 and "incomplete" in refused.stderr and "never ran" in refused.stderr
    # The next night leaves it out of the history.
    (project / "toy.toml").write_text(SUITE)
    commit(repo, 0.15, 1.0, "fast again")
    following = night(project)
    assert following.returncode == 0, following.stdout + following.stderr
    from harness.tracking.reader import RunStore
    from harness.tracking.uri import default_tracking_uri

    store = RunStore(default_tracking_uri(project / "results"))
    every = [store.load(found.info.run_id) for found in store.suite_runs("toy-life", "smoke")]
    (killed,) = [run for run in every if not run.complete]
    assert killed.status == "incomplete" and killed.cells_never_run == 6
    nights = store.history("toy-life", "smoke")
    assert len(nights) == 2 and killed.run_id not in {run.run_id for run in nights}
    trend = (project / "results" / "reports" / "nightly-toy-life-smoke" / "report.md").read_text()
    assert "over 2 nights" in trend
    # compare says so too, in its summary and its JSON.
    compared = harness(project, "compare", killed.run_id, nights[-1].run_id, "--json")
    assert "6 of 8 cell(s) never ran" in json.loads(compared.stdout)["incomplete"]["baseline"], compared.stderr


def test_a_baseline_from_another_machine_starts_this_machines_history_without_refusing(project: Path):
    from mlflow.tracking import MlflowClient

    from harness.tracking.reader import RunStore
    from harness.tracking.uri import default_tracking_uri
    from harness.tracking.writer import CellToWrite, write_suite_run

    commit(project / "repo", 0.05, 1.0, "base")
    uri = default_tracking_uri(project / "results")
    (project / "results").mkdir()
    other = {"fingerprint": "fp-elsewhere", "cpu": "Other CPU", "gpu": "none", "versions": {"python": "3.11.0"}}
    cells = [CellToWrite("work", "bench", seed, metrics={"wall_time_s": 5.0, "quality": 1.0}) for seed in range(6)]
    declarations = {"wall_time_s": {"unit": "s", "direction": "lower"}, "quality": {"unit": "1"}}
    foreign = write_suite_run(MlflowClient(tracking_uri=uri), suite="toy-life", profile="smoke", metrics=declarations,
                              cells=cells, machine=other, source="")  # fmt: skip
    store = RunStore(uri)
    store.promote(store.load(foreign), "the other machine's level")

    started = time.monotonic()
    here = night(project)
    assert here.returncode == 0, here.stdout + here.stderr
    assert "other machines have theirs (fp-elsewhere (Other CPU))" in here.stderr
    assert "starts its own history" in here.stderr and "promoted" in here.stdout
    assert "--metric" not in here.stdout + here.stderr
    assert time.monotonic() - started < 120
    # The next night compares with this machine's baseline, not the other one.
    again = night(project)
    assert again.returncode == 0 and "(this machine" in again.stderr, again.stdout + again.stderr


def test_run_records_the_full_sha_and_dirty_flag_of_the_repository_under_test(project: Path):
    from mlflow.tracking import MlflowClient

    from harness.tracking.uri import default_tracking_uri

    sha = commit(project / "repo", 0.0, 1.0, "base")
    (project / "repo" / "toylib.py").write_text(TOYLIB.format(seconds=0.0, quality=0.9))  # uncommitted
    ran = harness(project, "run", "toy.toml", "--repo", "repo", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["parent_run_id"]
    tags = MlflowClient(tracking_uri=default_tracking_uri(project / "results")).get_run(run_id).data.tags
    assert tags["mlflow.source.git.commit"] == sha and len(sha) == 40
    shown = harness(project, "report", sha[:7], "--format", "md", "--out", "by-sha")
    assert shown.returncode == 0, shown.stderr
    assert f"commit {sha[:12]} (dirty)" in (project / "by-sha" / "report.md").read_text()
    short = harness(project, "report", sha[:5], "--format", "md", "--out", "x")
    assert short.returncode == 2
    missing = harness(project, "run", "toy.toml", "--repo", "nowhere")
    assert missing.returncode == 2 and "nowhere" in missing.stderr
