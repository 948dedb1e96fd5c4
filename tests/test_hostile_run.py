"""Hostile plugins and damaged files (issue 23), through the real CLI and a real MLflow SQLite store: a cell that
exits or raises ``KeyboardInterrupt`` fails alone; a cell never inherits the process state an earlier cell left
in its worker; a cut or damaged journal line, a full disk and a planted symlink neither lose nor misroute results.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from core_support import harness_env, load_json, mlflow_cell_runs, run_harness

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "hostile_plugin")


def suite(directory: Path, body: str, name: str = "hostile", metrics: str = '["score"]') -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "hostile plugins"\nmetrics = {metrics}\n'
                    f'environments = ["constant"]\n{body}')  # fmt: skip
    return path


def harness(tmp_path: Path, *args: str):
    return run_harness(*PLUGINS, *args, cwd=tmp_path, env=ENV)


def journal_results(tmp_path: Path, name: str, profile: str = "smoke") -> list[dict[str, Any]]:
    """The readable result records of a journal (a line a full disk cut short is left out)."""
    records = []
    for line in (tmp_path / "results" / "journal" / f"{name}--{profile}.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event["type"] == "result":
            records.append(event["record"])
    return records


# -- case 1: SystemExit and KeyboardInterrupt from a cell ----------------------------------------------------------
def test_a_cell_that_exits_or_raises_keyboard_interrupt_fails_alone_and_the_run_finishes(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["exit", {name = "exit", label = "exit-3", params = {code = 3}}, "interrupt", '
          '"noop"]\n')  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    process = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert process.returncode == 1, process.stderr
    summary = load_json(process)
    cells = {cell["label"].split("/")[0]: cell for cell in summary["cells"]}
    assert cells.keys() == {"exit", "exit-3", "interrupt", "noop"}
    assert cells["noop"]["status"] == "ok"
    assert cells["exit"]["status"] == "failed" and "SystemExit" in cells["exit"]["error"]
    assert "sys.exit(0)" in cells["exit"]["error"]
    assert cells["exit-3"]["status"] == "failed" and "sys.exit(3)" in cells["exit-3"]["error"]
    assert cells["interrupt"]["status"] == "failed"
    assert "KeyboardInterrupt" in cells["interrupt"]["error"] and "raised by the cell" in cells["interrupt"]["error"]
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(uri).get_run(summary["parent_run_id"])
    assert parent.info.status == "FAILED", "the parent is closed (not left RUNNING), failed because cells failed"
    assert len(mlflow_cell_runs(uri, "hostile")) == 4
    again = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert again.returncode == 1 and load_json(again)["counts"] == {"ok": 0, "failed": 3, "skipped": 0}


# -- case 2: state a cell leaves in a reused worker -------------------------------------------------------------------
def test_a_cell_sees_the_same_process_state_whatever_ran_before_it_in_its_worker(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    suite(tmp_path, 'algorithms = ["probe"]\n', name="alone")
    suite(tmp_path, f'algorithms = [{{name = "mess", params = {{elsewhere = "{elsewhere}"}}}}, '
          '{name = "probe", label = "after-mess", params = {tag = "a"}}, "interop", '
          '{name = "probe", label = "after-interop", params = {tag = "b"}}]\n', name="after")  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    alone = harness(tmp_path, "run", "alone.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    assert alone.returncode == 0, alone.stderr
    after = harness(tmp_path, "run", "after.toml", "--tracking-uri", uri, "--json", "--jobs", "1")
    statuses = {cell["label"].split("/")[0]: (cell["status"], cell["error"]) for cell in load_json(after)["cells"]}
    assert all(status == "ok" for status, _ in statuses.values()), statuses
    (clean,) = journal_results(tmp_path, "alone")
    results = {result["cell"]["algorithm_label"]: result for result in journal_results(tmp_path, "after")}
    expected = {k: v for k, v in clean["outcome"].items() if k != "pid"}
    for label in ("after-mess", "after-interop"):
        probe = results[label]
        assert {k: v for k, v in probe["outcome"].items() if k != "pid"} == expected, label
        assert probe["metrics"] == clean["metrics"] == {"score": 2.0}
    worker_pid = int(results["mess"]["worker"].rsplit(":", 1)[1])
    assert results["after-mess"]["outcome"]["pid"] == worker_pid, "restorable state: the worker is reused"
    interop_pid = results["interop"]["outcome"]["pid"]
    assert interop_pid == worker_pid
    assert results["after-interop"]["outcome"]["pid"] != interop_pid, "unrestorable state: the worker is replaced"
    in_store = {run.data.tags["harness.algorithm"]: run.data.metrics.get("score")
                for run in mlflow_cell_runs(uri, "after")}  # fmt: skip
    assert in_store["after-mess"] == in_store["after-interop"] == 2.0


# -- cases 3 and 4: cut and damaged journal lines ------------------------------------------------------------------
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port
DEAD_ENV = {**ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def journal_path(tmp_path: Path, name: str = "hostile") -> Path:
    return tmp_path / "results" / "journal" / f"{name}--smoke.jsonl"


def named(journal: Path, line: int) -> str:
    """How warnings name a journal line (the results folder as given: ``results``, relative to the run's cwd)."""
    return f"results/journal/{journal.name}:{line}"


def test_an_event_after_a_cut_last_line_starts_a_fresh_line_and_sync_delivers_it(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0]\nalgorithms = ["noop"]\n')
    first = harness(tmp_path, "run", "hostile.toml", "--no-tracking", "--json")
    assert first.returncode == 0, first.stderr
    journal = journal_path(tmp_path)
    with journal.open("ab") as handle:  # a kill (or a full disk) in the middle of writing an event
        handle.write(b'{"type":"result","record":{"cell":{"suite":"hos')
    # A new configuration while the store is down: its run record is the event after the cut line.
    second = run_harness(*PLUGINS, "run", "hostile.toml", "--tracking-uri", DEAD, "--set", "seeds=[1]", "--json",
                         cwd=tmp_path, env=DEAD_ENV)  # fmt: skip
    assert second.returncode == 0 and load_json(second)["tracking_error"], second.stderr
    lines = journal.read_bytes().splitlines()
    assert lines[2] == b'{"type":"result","record":{"cell":{"suite":"hos', "the cut line stays alone on its line"
    assert json.loads(lines[3])["type"] == "run" and all(json.loads(line) for line in lines[3:])
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    synced = harness(tmp_path, "sync", "--tracking-uri", uri, "--json")
    assert synced.returncode == 0, synced.stderr
    assert sum(report["delivered"] for report in json.loads(synced.stdout)) == 2
    assert "damaged" not in synced.stderr, "a line cut short is not damage: nothing it held was confirmed"
    assert sorted(run.data.tags["harness.seed"] for run in mlflow_cell_runs(uri, "hostile")) == ["0", "1"]


def test_sync_exits_non_zero_naming_results_it_cannot_deliver(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0]\nalgorithms = ["noop"]\n')
    ran = run_harness(*PLUGINS, "run", "hostile.toml", "--tracking-uri", DEAD, "--json", cwd=tmp_path, env=DEAD_ENV)
    assert ran.returncode == 0, ran.stderr
    journal = journal_path(tmp_path)
    lines = journal.read_bytes().splitlines()
    assert json.loads(lines[0])["type"] == "run"
    lines[0] = lines[0][:40] + b"#####" + lines[0][45:]  # the run record damaged: the result has no configuration
    journal.write_bytes(b"\n".join(lines) + b"\n")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    synced = harness(tmp_path, "sync", "--tracking-uri", uri)
    assert synced.returncode == 1, synced.stderr
    assert f"{named(journal, 1)}: skipped a damaged journal line" in synced.stderr
    assert f"{named(journal, 1).rsplit(':', 1)[0]}: could not deliver: 1 result(s) belong to no run record" in (
        " ".join(synced.stderr.split())
    )
    assert "noop/constant/seed=0" in synced.stderr
    assert "Traceback" not in synced.stderr


def test_a_damaged_line_in_the_middle_is_skipped_with_a_warning_by_run_dry_run_and_sync(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = ["noop"]\n', name="alpha")
    suite(tmp_path, 'seeds = [0]\nalgorithms = ["noop"]\n', name="beta")
    assert harness(tmp_path, "run", "alpha.toml", "--tracking-uri", uri, "--json").returncode == 0
    journal = journal_path(tmp_path, "alpha")
    lines = journal.read_bytes().splitlines()
    synced_at = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "synced")
    lines[synced_at] = b"\xff\xfe not text \x00"  # a disk error in the middle of the file
    lines.insert(synced_at + 1, b'{"type": "result", "record": {"cell": 1}}')  # an event that is not one
    journal.write_bytes(b"\n".join(lines) + b"\n")
    where = f"{named(journal, synced_at + 1)}: skipped a damaged journal line"
    plan = harness(tmp_path, "run", "alpha.toml", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    assert [cell["state"] for cell in load_json(plan)["cells"]] == ["done", "done"]
    assert where in plan.stderr and "not UTF-8" in plan.stderr
    assert f"{named(journal, synced_at + 2)}: skipped" in plan.stderr and "'result' event" in plan.stderr
    rerun = harness(tmp_path, "run", "alpha.toml", "--tracking-uri", uri, "--json")
    assert rerun.returncode == 0 and load_json(rerun)["already_finished"] == 2, rerun.stderr
    assert where in rerun.stderr and "Traceback" not in rerun.stderr
    # Another suite's journal, with a result its store lacks: sync goes on to it.
    beta = run_harness(*PLUGINS, "run", "beta.toml", "--tracking-uri", DEAD, "--json", cwd=tmp_path, env=DEAD_ENV)
    assert beta.returncode == 0, beta.stderr
    synced = harness(tmp_path, "sync", "--tracking-uri", uri, "--json")
    assert where in synced.stderr and "Traceback" not in synced.stderr
    reports = {Path(report["journal"]).name: report for report in json.loads(synced.stdout)}
    assert reports["beta--smoke.jsonl"]["delivered"] == 1 and not reports["beta--smoke.jsonl"]["error"]
    assert synced.returncode == 1, "the inserted line held a result that cannot be read"
    assert reports["alpha--smoke.jsonl"]["error"].startswith("could not deliver: 1 damaged line(s) held a cell's")
    assert len(mlflow_cell_runs(uri, "alpha")) == 2, "the damaged mark of delivery does not duplicate a result"
    assert len(mlflow_cell_runs(uri, "beta")) == 1


# -- case 11 (the journal): a full disk ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/results`` on a 2 MiB tmpfs; skipped (with the reason) where this machine cannot mount one."""
    results = tmp_path / "results"
    results.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command here to make a small tmpfs for a full disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(results)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk here (needs root): {mounted.stderr.strip()}")
    try:
        yield results
    finally:
        subprocess.run(["umount", "-l", str(results)], check=False)


def test_a_full_disk_while_journaling_is_a_clear_error_and_the_next_run_resumes(tmp_path: Path, small_disk: Path):
    armed = tmp_path / "armed"
    armed.touch()
    filler = small_disk / "filler"
    suite(tmp_path, f'algorithms = ["noop", {{name = "fill", params = {{path = "{filler}", armed = "{armed}"}}}}, '
          '"random"]\n')  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"  # the store on another disk: this is the journal's full disk
    full = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--jobs", "1")
    assert full.returncode == 2, full.stderr
    assert "results/journal/hostile--smoke.jsonl: could not write a cell's result to the journal: the disk is " \
           "full" in " ".join(full.stderr.split())  # fmt: skip
    assert "Traceback" not in full.stderr and "OSError" not in full.stderr
    kept = [r["cell"]["algorithm_label"] for r in journal_results(tmp_path, "hostile")]
    assert kept == ["noop"], "the result journaled before the disk filled is kept (and nothing after it)"
    armed.unlink()
    filler.unlink()
    resumed = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--jobs", "1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = load_json(resumed)
    assert summary["already_finished"] == len(kept) and summary["counts"]["ok"] == 3 - len(kept)
    assert sorted(r["cell"]["algorithm_label"] for r in journal_results(tmp_path, "hostile")) == \
        ["fill", "noop", "random"]  # fmt: skip
    assert "damaged" not in resumed.stderr
    labels = sorted(run.data.tags["harness.algorithm"] for run in mlflow_cell_runs(uri, "hostile"))
    assert labels == ["fill", "noop", "random"], "each result reaches the store once"


# -- case 8 (files): a symlink planted in the results folder -------------------------------------------------------
def test_lock_and_journal_files_are_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["noop"]\n')
    victim = tmp_path / "victim.lock"
    victim.write_text("someone else's file\n")
    journal_dir = tmp_path / "results" / "journal"
    journal_dir.mkdir(parents=True)
    for planted in ("hostile--smoke.lock", "hostile--smoke.jsonl"):
        link = journal_dir / planted
        link.symlink_to(victim)
        process = harness(tmp_path, "run", "hostile.toml", "--no-tracking")
        assert process.returncode == 2, process.stderr
        assert f"results/journal/{planted} is a symbolic link" in " ".join(process.stderr.split())
        assert "Traceback" not in process.stderr
        assert victim.read_text() == "someone else's file\n", f"written through {planted}"
        link.unlink()
    assert harness(tmp_path, "run", "hostile.toml", "--no-tracking").returncode == 0


# -- case 7: values at the edges -------------------------------------------------------------------------------------
def test_numpy_booleans_are_refused_like_booleans_and_conversion_errors_name_the_metric(tmp_path: Path) -> None:
    whats = ["bool", "np_bool", "array", "bad_float", "number"]
    entries = ", ".join(f'{{name = "emit", label = "{what}", params = {{what = "{what}"}}}}' for what in whats)
    suite(tmp_path, f"algorithms = [{entries}]\n", metrics='["raw"]')
    process = harness(tmp_path, "run", "hostile.toml", "--no-tracking", "--json")
    cells = {cell["label"].split("/")[0]: cell for cell in load_json(process)["cells"]}
    assert cells["number"]["status"] == "ok" and cells["number"]["metrics"]["raw"] == 0.5
    assert "metric 'raw' returned True (bool)" in cells["bool"]["error"]
    assert cells["np_bool"]["status"] == "failed", "np.bool_ is a boolean too, not the number 1.0"
    assert "metric 'raw' returned np.True_ (bool)" in cells["np_bool"]["error"]
    for what in ("array", "bad_float"):
        assert cells[what]["status"] == "failed" and "metric 'raw' returned" in cells[what]["error"], what
    assert "no float for you" in cells["bad_float"]["error"]


def test_a_numpy_boolean_parameter_default_is_a_boolean() -> None:
    import numpy as np

    from harness.specs import Param, ParamError

    flag = Param("flag", np.True_)
    assert flag.validate(False) is False and flag.validate(np.False_) is False
    with pytest.raises(ParamError, match="expected true or false"):
        flag.validate(1)
    with pytest.raises(ParamError, match="expected an integer"):
        Param("count", 1).validate(np.True_)


def test_values_near_the_float_limit_aggregate_to_finite_numbers(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = [{name = "emit", params = {huge = true}}]\n')
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    process = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri)
    assert process.returncode == 0, process.stderr
    assert "1.7e+308 ± 0 (n=2)" in process.stdout
    from harness.analysis.stats.aggregate import BootstrapConfig, aggregate_all

    estimates = aggregate_all([[1.7e308, 1.7e308], [1.7e308, 1.6e308]], BootstrapConfig(n_resamples=200))
    assert estimates["iqm"].value == 1.7e308 and estimates["median"].value == 1.7e308
    assert all(np.isfinite([e.value, e.low, e.high]).all() for e in estimates.values())
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("hostile").experiment_id],
                                filter_string="tags.`harness.kind` = 'suite-run'")[0]  # fmt: skip
    aggregates = json.loads(Path(client.download_artifacts(parent.info.run_id, "aggregates.json", str(tmp_path)))
                            .read_text())  # fmt: skip
    assert [a["mean"] for a in aggregates] == [1.7e308]


def test_seeds_out_of_range_are_refused_at_load_naming_the_key(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, -1]\nalgorithms = ["noop"]\n')
    negative = harness(tmp_path, "run", "hostile.toml", "--dry-run")
    assert negative.returncode == 2 and "seeds[1]: seed -1 is out of range" in negative.stderr
    suite(tmp_path, 'algorithms = ["noop"]\n[profiles.smoke]\nseeds = [4294967296]\n')
    too_big = harness(tmp_path, "run", "hostile.toml", "--dry-run")
    assert too_big.returncode == 2 and "profiles.smoke.seeds" in too_big.stderr
    assert "seed 4294967296 is out of range" in too_big.stderr and "0 to 4294967295" in too_big.stderr
    suite(tmp_path, 'algorithms = ["noop"]\n')
    from_set = harness(tmp_path, "run", "hostile.toml", "--dry-run", "--set", "seeds=[3, -5]")
    assert from_set.returncode == 2 and "seeds[1]: seed -5 is out of range" in from_set.stderr
    assert "Traceback" not in negative.stderr + too_big.stderr + from_set.stderr


CLOCK_STEP = '''
"""Test only: the wall clock steps $CLOCK_STEP_S seconds (as NTP or an admin would), once the file
$CLOCK_STEP_TRIGGER exists, or from the start without one."""
import os
import time

_real_time, _trigger, _stepped = time.time, os.environ.get("CLOCK_STEP_TRIGGER", ""), []
_step = float(os.environ.get("CLOCK_STEP_S", "3600"))


def _stepped_time():
    if not _stepped and (not _trigger or os.path.exists(_trigger)):
        _stepped.append(True)
    return _real_time() + (_step if _stepped else 0.0)


time.time = _stepped_time
'''


def clock_stepping(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of a harness whose processes (driver and workers) see a stepped wall clock."""
    stepping = tmp_path / "stepping"
    stepping.mkdir(exist_ok=True)
    (stepping / "sitecustomize.py").write_text(CLOCK_STEP)  # imported at start by every Python process
    return harness_env([stepping], HARNESS_DISABLE_PLUGIN_AUTOLOAD="1", **variables)


def test_a_wall_clock_step_neither_times_out_a_cell_nor_stretches_its_duration(tmp_path: Path) -> None:
    trigger = tmp_path / "step-now"
    suite(tmp_path, f'timeout_s = 60\nalgorithms = [{{name = "step", params = {{trigger = "{trigger}"}}}}]\n')
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    env = clock_stepping(tmp_path, CLOCK_STEP_TRIGGER=str(trigger))
    process = run_harness(*PLUGINS, "run", "hostile.toml", "--tracking-uri", uri, "--json", cwd=tmp_path, env=env)
    (cell,) = load_json(process)["cells"]
    assert trigger.exists(), "the clock stepped while the cell ran"
    assert cell["status"] == "ok", cell["error"]
    assert 1.5 < cell["duration_s"] < 30, "measured on the monotonic clock, not across the step"


def test_latest_is_the_run_created_last_even_when_its_clock_was_behind(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["noop"]\n')
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    first = harness(tmp_path, "run", "hostile.toml", "--tracking-uri", uri, "--json")
    assert first.returncode == 0, first.stderr
    behind = clock_stepping(tmp_path, CLOCK_STEP_S="-86400")  # a machine whose clock is a day behind
    second = run_harness(*PLUGINS, "run", "hostile.toml", "--tracking-uri", uri, "--json", "--set", "seeds=[1]",
                         cwd=tmp_path, env=behind)  # fmt: skip
    assert second.returncode == 0, second.stderr
    from harness.tracking.reader import RunStore

    store = RunStore(uri)
    assert store.resolve("latest", "hostile") == load_json(second)["parent_run_id"]
    assert store.resolve("latest~1", "hostile") == load_json(first)["parent_run_id"]


def test_the_latest_attempt_of_a_cell_follows_its_sequence_not_its_start_time() -> None:
    from harness.record import CellRun
    from harness.tracking.reader import latest_cell_runs

    def attempt(run_id: str, sequence: int, start_ms: int) -> CellRun:
        return CellRun(run_id, "ok", "noop", "constant", 0, cell_key="k", start_time_ms=start_ms, sequence=sequence)

    (latest,) = latest_cell_runs([attempt("later", 2, 1_000), attempt("earlier", 1, 9_000)])
    assert latest.run_id == "later"


def test_an_event_an_older_harness_glued_onto_a_cut_line_is_recovered(tmp_path: Path) -> None:
    from harness.tracking.journal import Journal

    suite(tmp_path, 'seeds = [0]\nalgorithms = ["noop"]\n')
    assert harness(tmp_path, "run", "hostile.toml", "--no-tracking").returncode == 0
    journal = journal_path(tmp_path)
    run_line, result_line = journal.read_bytes().splitlines()
    journal.write_bytes(run_line + b"\n" + b'{"type":"result","record":{"cell":{"su' + result_line + b"\n")
    state = Journal(journal).read(warn=lambda message: pytest.fail(f"warned: {message}"))
    assert len(state.results) == 1 and state.unreadable_lines == 1
    plan = harness(tmp_path, "run", "hostile.toml", "--dry-run", "--json")
    assert [cell["state"] for cell in load_json(plan)["cells"]] == ["done"]
