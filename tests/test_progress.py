"""Live progress from inside cells: ``context.progress`` in a worker reaches the driver's display, rate-limited,
on the local executor (here) and on Ray (tests/test_ray_executor.py)."""

from __future__ import annotations

import re
from pathlib import Path

from core_support import harness_env, load_json, run_harness

from harness.context import CellContext

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "record_plugin")


def test_running_cells_are_shown_with_their_progress_and_phase_at_most_every_few_seconds(tmp_path: Path) -> None:
    (tmp_path / "slow.toml").write_text(
        'name = "slow"\ndescription = "progress"\nmetrics = ["score"]\nseeds = [0, 1]\n'
        'algorithms = [{name = "progressing", params = {steps = 60, step_s = 0.2}}]\nenvironments = ["constant"]\n'
    )
    process = run_harness(*PLUGINS, "run", "slow.toml", "--no-tracking", "--json", "-j", "2", cwd=tmp_path, env=ENV)
    assert process.returncode == 0, process.stderr
    assert load_json(process)["counts"]["ok"] == 2  # stdout is the JSON document alone
    status = [line for line in process.stderr.splitlines() if "running:" in line]
    assert status, process.stderr
    # Each running cell by name, with done/total and its phase, and the elapsed time.
    assert any(re.search(r"progressing/constant/seed=\d \d+/60 training \(0:00:\d\d\)", line) for line in status)
    assert any("ETA" in line for line in status[1:]), "the overall ETA counts the running cells' progress"
    # Non-interactive output: a status line every 5 s at most (the cells run about 12 s), never one per step.
    assert len(status) <= 4, status


def test_progress_is_rate_limited_inside_the_worker(monkeypatch) -> None:
    from harness import context as context_module

    monkeypatch.setattr(context_module, "PROGRESS_INTERVAL_S", 3600.0)  # no time-based event in this test
    events: list[dict] = []
    context = CellContext(seed=0, cell={"key": "k"}, progress_sink=events.append)
    for step in range(10_000):
        context.progress(step, 10_000, "training")
    context.progress(10_000, 10_000, "training")
    context.progress(0, None, "evaluating")
    # The first event, the completed one and the phase change; nothing for the other 9,999 steps.
    assert [(e["done"], e["note"]) for e in events] == [(0, "training"), (10_000, "training"), (0, "evaluating")]
    CellContext(seed=0).progress(1, 2)  # no display: a no-op


def test_wall_time_is_the_cells_own_work_and_shared_setup_is_recorded_apart(tmp_path: Path) -> None:
    (tmp_path / "setup.toml").write_text(
        'name = "setup"\ndescription = "shared setup"\nmetrics = ["score", "wall_time_s"]\n'
        'algorithms = [{name = "shared-cache", params = {shared_s = 1.5, own_s = 0.2}}]\nenvironments = ["constant"]\n'
    )
    process = run_harness(*PLUGINS, "-p", "harness_core_metrics.plugin", "run", "setup.toml", "--no-tracking", "--json",
                          cwd=tmp_path, env=ENV)  # fmt: skip
    assert process.returncode == 0, process.stderr
    (cell,) = load_json(process)["cells"]
    assert 0.2 <= cell["metrics"]["wall_time_s"] < 1.0, "the 1.5 s of shared setup is not charged to the cell"
    import json

    journal = (tmp_path / "results" / "journal" / "setup--smoke.jsonl").read_text().splitlines()
    record = next(json.loads(line)["record"] for line in journal if json.loads(line)["type"] == "result")
    assert record["shared_setup_s"] >= 1.5


def test_the_run_summary_warns_of_unstable_measurements(tmp_path: Path) -> None:
    (tmp_path / "noisy.toml").write_text(
        'name = "noisy"\ndescription = "unstable"\nmetrics = ["score"]\nseeds = [0, 1, 2, 3]\n'
        'algorithms = ["random", "noop"]\nenvironments = [{name = "constant", params = {value = 0.01}}]\n'
    )
    process = run_harness(*PLUGINS, "run", "noisy.toml", "--no-tracking", "--json", cwd=tmp_path, env=ENV)
    assert process.returncode == 0, process.stderr
    stability = load_json(process)["stability"]
    # random's score spreads over seeds (its draws); noop's is the same every seed.
    assert [(s["algorithm"], s["metric"]) for s in stability] == [("random", "score")]
    assert any("coefficient of variation" in w for w in stability[0]["warnings"])
    table = run_harness(*PLUGINS, "run", "noisy.toml", "--no-tracking", "--no-resume", cwd=tmp_path, env=ENV)
    assert "unstable: random/constant score: coefficient of variation" in table.stdout
