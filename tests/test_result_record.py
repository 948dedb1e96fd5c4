"""The result record, end to end through the real CLI and a real SQLite MLflow store: what a result is, when it
is reused, where it is delivered (each defect of the result-record issue has a test here or in
test_tracking_stores.py and the d4rl plugin's test_d4rl_record.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from core_support import harness_env, load_json, mlflow_cell_runs, run_harness

from harness.tracking import layout

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "record_plugin")


def suite(tmp_path: Path, body: str, name: str = "rec") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "record tests"\nmetrics = ["score"]\n{body}')
    return path


def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, plugins=PLUGINS):
    process = run_harness(*plugins, "run", "rec.toml", "--tracking-uri", uri(tmp_path), "--json", *args,
                          cwd=tmp_path, env=env or ENV)  # fmt: skip
    assert process.returncode in (0, 1), process.stderr
    return load_json(process), process


def load_latest(tmp_path: Path, run_id: str):
    from harness.tracking.reader import RunStore

    return RunStore(uri(tmp_path)).load(run_id)


# -- 1. fresh runs never reuse a finished cell's checkpoint ---------------------------------------------------
def test_no_resume_reruns_from_scratch_and_resume_continues_only_an_interrupted_attempt(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = [{name = "checkpointed", params = {steps = 4}}]\nenvironments = ["constant"]\n')
    first, _ = run(tmp_path)
    key = first["cells"][0]["key"]
    assert first["cells"][0]["status"] == "ok"
    assert not (tmp_path / "results" / "checkpoints" / key).exists(), "a finished attempt keeps no checkpoint"
    # A leftover checkpoint of a finished attempt (what an older harness left behind) must not be picked up.
    leftover = tmp_path / "results" / "checkpoints" / key
    leftover.mkdir(parents=True)
    (leftover / "state.json").write_text(json.dumps({"step": 4, "started": 0}))
    again, _ = run(tmp_path, "--no-resume")
    journal = tmp_path / "results" / "journal" / "rec--smoke.jsonl"
    outcome = [json.loads(line)["record"]["outcome"] for line in journal.read_text().splitlines()
               if json.loads(line)["type"] == "result"]  # fmt: skip
    assert outcome[-1]["resumed_steps"] == 0, "--no-resume must compute the cell afresh"
    assert again["cells"][0]["status"] == "ok"


def test_an_interrupted_attempt_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    suite(
        tmp_path,
        'timeout_s = 3\nalgorithms = [{name = "checkpointed", params = {steps = 4, stop_at = 2, sleep_after = 30.0}}]\n'
        'environments = ["constant"]\n',
    )
    interrupted, _ = run(tmp_path)
    assert interrupted["cells"][0]["status"] == "failed" and "timeout" in interrupted["cells"][0]["error"]
    # The same cell, resumed: the attempt continues where the checkpoint left it (step 2), then finishes.
    state = tmp_path / "results" / "checkpoints" / interrupted["cells"][0]["key"] / "state.json"
    assert json.loads(state.read_text())["step"] == 2
    # stop_at is reached again only if it starts from 0; from the checkpoint (step 2) it goes straight to 4.
    resumed, _ = run(tmp_path)
    assert resumed["cells"][0]["status"] == "ok", resumed["cells"][0]["error"]
    assert resumed["cells"][0]["metrics"]["score"] == 4.0


# -- 2. code changes invalidate results ---------------------------------------------------------------------
def test_a_code_change_changes_the_key_and_dry_run_says_which_cells_rerun_because_of_it(tmp_path: Path) -> None:
    module = tmp_path / "plugin_src" / "versioned_plugin.py"
    module.parent.mkdir()
    source = (Path(__file__).parent / "plugins" / "fixture_plugin.py").read_text()
    module.write_text(source.replace('"fixture_plugin:', '"versioned_plugin:'))
    env = harness_env([module.parent], HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    plugins = ("-p", "versioned_plugin")
    suite(tmp_path, 'algorithms = ["noop", "random"]\nenvironments = ["constant"]\n')
    first, _ = run(tmp_path, env=env, plugins=plugins)
    assert first["counts"]["ok"] == 2
    plan = load_json(run_harness(*plugins, "run", "rec.toml", "--dry-run", "--json", cwd=tmp_path, env=env))
    assert [c["state"] for c in plan["cells"]] == ["done", "done"]

    module.write_text(module.read_text().replace('return {"score": environment.value}', 'return {"score": 2.0}'))
    plan = load_json(run_harness(*plugins, "run", "rec.toml", "--dry-run", "--json", cwd=tmp_path, env=env))
    states = {c["label"].split("/")[0]: c["state"] for c in plan["cells"]}
    # The whole module changed, so both algorithms (and the environment defined there) are new code.
    assert all(state.startswith("to run: code changed (") for state in states.values()), states
    assert "algorithm" in states["noop"] and "environment" in states["noop"]
    second, _ = run(tmp_path, env=env, plugins=plugins)
    assert second["already_finished"] == 0 and second["counts"]["ok"] == 2
    assert {c["key"] for c in second["cells"]}.isdisjoint({c["key"] for c in first["cells"]})
    noop = next(c for c in second["cells"] if c["label"].startswith("noop/"))
    assert noop["metrics"]["score"] == 2.0
    tags = [r.data.tags for r in mlflow_cell_runs(uri(tmp_path), "rec")]
    assert len({t[f"{layout.CODE_PREFIX}algorithm"] for t in tags if t[layout.ALGORITHM] == "noop"}) == 2


def test_code_versions_follow_imports_within_the_package_without_importing(tmp_path: Path) -> None:
    import sys

    from harness.run.code_version import code_files, code_version

    package = tmp_path / "cvpkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('importing the package is not allowed here')\n")
    (package / "algo.py").write_text("from cvpkg.shared import helper\nimport numpy\n\ndef run(): return helper()\n")
    (package / "shared.py").write_text("def helper(): return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        before = code_version(["cvpkg.algo:run"])
        assert set(code_files(["cvpkg.algo:run"])) == {"cvpkg.algo", "cvpkg.shared"}
        assert "cvpkg" not in sys.modules
        from harness.run import code_version as module

        (package / "shared.py").write_text("def helper(): return 2\n")
        module._file_digest.cache_clear()
        assert code_version(["cvpkg.algo:run"]) != before, "a change to an imported module is a code change"
    finally:
        sys.path.remove(str(tmp_path))


# -- 4. a name MLflow refuses ---------------------------------------------------------------------------------
def test_a_refused_curve_name_fails_its_cell_with_a_clear_error_and_holds_back_nothing(tmp_path: Path) -> None:
    plugins = ("-p", "fixture_plugin", "-p", "refused_name_plugin")
    suite(tmp_path, '[[matrix]]\nalgorithms = ["paren-curve"]\nenvironments = ["paren-env"]\n'
          '[[matrix]]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n')  # fmt: skip
    summary, _ = run(tmp_path, plugins=plugins)
    cells = {c["label"].split("/")[0]: c for c in summary["cells"]}
    assert cells["paren-curve"]["status"] == "failed"
    assert "'return (eval)'" in cells["paren-curve"]["error"] and "curve name refused" in cells["paren-curve"]["error"]
    assert cells["noop"]["status"] == "ok"
    assert summary["tracking_error"] is None and summary["undelivered"] == 0
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(uri(tmp_path)).get_run(summary["parent_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags[layout.STATUS] == "finished with failures"
    assert len(mlflow_cell_runs(uri(tmp_path), "rec")) == 2


def test_plugins_check_names_a_curve_that_mlflow_would_refuse(tmp_path: Path) -> None:
    process = run_harness("-p", "refused_name_plugin", "plugins", "check", "refused_name_plugin", cwd=tmp_path,
                          env=ENV)  # fmt: skip
    assert process.returncode != 0
    assert "return (eval)" in process.stdout + process.stderr


def test_a_record_the_store_refuses_is_skipped_and_the_others_are_delivered(tmp_path: Path) -> None:
    """A journal written by a harness that did not check names: sync delivers the rest, marks the bad one."""
    suite(tmp_path, 'seeds = [0, 1, 2]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n')
    summary, _ = run(tmp_path, "--no-tracking")
    journal = tmp_path / "results" / "journal" / "rec--smoke.jsonl"
    lines = journal.read_text().splitlines()
    for index, line in enumerate(lines):
        event = json.loads(line)
        if event["type"] == "result" and event["record"]["cell"]["seed"] == 1:
            event["record"]["history"] = [["return (eval)", 0, 1.0]]
            lines[index] = json.dumps(event)
    journal.write_text("\n".join(lines) + "\n")
    synced = run_harness(*PLUGINS, "sync", "--tracking-uri", uri(tmp_path), "--json", cwd=tmp_path, env=ENV)
    assert synced.returncode == 0, synced.stderr
    report = load_json(synced)
    assert [(r["delivered"], r["refused"]) for r in report] == [(2, 1)]
    assert len(mlflow_cell_runs(uri(tmp_path), "rec")) == 2
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri(tmp_path)).get_run(report[0]["parent_run_id"]).info.status == "FINISHED"
    again = load_json(run_harness(*PLUGINS, "sync", "--tracking-uri", uri(tmp_path), "--json", cwd=tmp_path,
                                  env=ENV))  # fmt: skip
    assert again == [], "a refused record is not retried forever"
    assert summary["counts"]["ok"] == 3


def test_refusals_and_outages_are_told_apart_on_real_stores(tmp_path: Path) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from harness.tracking.store import is_refusal
    from harness.tracking.uri import prepare_sqlite_store

    prepare_sqlite_store(uri(tmp_path))
    client = MlflowClient(uri(tmp_path))
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    with pytest.raises(Exception) as refused:
        client.log_batch(run_id, metrics=[Metric("return (eval)", 1.0, 0, 0)])
    assert is_refusal(refused.value)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception) as unreachable:
        MlflowClient("http://127.0.0.1:9").search_experiments()
    assert not is_refusal(unreachable.value)


@pytest.mark.parametrize(
    "name", ["return (eval)", "a/../b", "/abs", "x" * 300, "", "ok name", "eval/return", "loss:q", "a-b.c_d"]
)
def test_name_rules_match_mlflows_own(name: str) -> None:
    from mlflow.utils.validation import _validate_metric_name

    from harness.record import name_problem

    try:
        _validate_metric_name(layout.curve_key(name) if name else name)
        accepted = bool(name)
    except Exception:
        accepted = False
    if len(name) > 200:
        accepted = False  # harness keeps room for the curve/ prefix and MLflow's 250-character limit
    assert (name_problem(name) is None) == accepted, name


# -- 5. labels with '/' ---------------------------------------------------------------------------------------
def test_swept_values_holding_slashes_stay_separate_cases(tmp_path: Path) -> None:
    paths = ["data/a", "data/b/c", "/abs/x", "d/e/f/g"]
    suite(tmp_path, f'algorithms = [{{name = "echo", sweep = {{text = {json.dumps(paths)}}}}}]\n'
          'environments = ["constant"]\n')  # fmt: skip
    summary, _ = run(tmp_path)
    assert summary["counts"]["ok"] == 4
    loaded = load_latest(tmp_path, summary["parent_run_id"])
    assert sorted(c.algorithm for c in loaded.cells) == sorted(f"echo[text={p}]" for p in paths)
    assert {c.environment for c in loaded.cells} == {"constant"}

    assert len(loaded.values_by_case("score")) == 4


# -- 6. a different configuration, a different parent run --------------------------------------------------------
def test_a_run_with_other_overrides_gets_its_own_parent_and_report(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n')
    one, _ = run(tmp_path, "--set", "constant.value=1.0")
    other, _ = run(tmp_path, "--set", "constant.value=0.9")
    assert one["parent_run_id"] != other["parent_run_id"]
    assert one["config_id"] != other["config_id"]
    scores = sorted(c.metrics["score"] for c in load_latest(tmp_path, other["parent_run_id"]).cells)
    assert scores == [0.9, 0.9]
    from mlflow.tracking import MlflowClient

    tags = MlflowClient(uri(tmp_path)).get_run(other["parent_run_id"]).data.tags
    assert json.loads(tags[layout.OVERRIDES]) == ["constant.value=0.9"]
    again, _ = run(tmp_path, "--set", "constant.value=1.0")
    assert again["parent_run_id"] == one["parent_run_id"] and again["already_finished"] == 2


# -- 7. superseded attempts ------------------------------------------------------------------------------------
def test_a_failed_cell_rerun_successfully_supersedes_its_failure(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    suite(tmp_path, f'seeds = [0]\nalgorithms = ["noop", {{name = "flaky", params = {{marker = "{marker}"}}}}]\n'
          'environments = [{name = "constant", sweep = {value = [1.0, 2.0]}}]\n')  # fmt: skip
    first, _ = run(tmp_path)
    assert first["counts"] == {"ok": 3, "failed": 1, "skipped": 0}
    second, _ = run(tmp_path)
    assert second["counts"] == {"ok": 1, "failed": 0, "skipped": 0} and second["already_finished"] == 3
    assert first["parent_run_id"] == second["parent_run_id"]
    loaded = load_latest(tmp_path, second["parent_run_id"])
    assert sorted(c.status for c in loaded.cells) == ["ok"] * 4
    runs = mlflow_cell_runs(uri(tmp_path), "rec")
    assert len(runs) == 5, "earlier attempts are kept"
    failed = [r for r in runs if r.data.tags[layout.STATUS] == "failed"]
    assert len(failed) == 1 and failed[0].data.tags.get(layout.SUPERSEDED) == "true"
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(uri(tmp_path)).get_run(second["parent_run_id"])
    assert parent.data.metrics["cells_ok"] == 4 and parent.data.metrics["cells_failed"] == 0
    assert parent.info.status == "FINISHED"
    from harness.analysis.stats import BootstrapConfig
    from harness.report.build import build_report
    from harness.tracking.reader import RunStore

    store = RunStore(uri(tmp_path))
    content = build_report(store.load(second["parent_run_id"]), store, BootstrapConfig(n_resamples=200))
    assert content.counts == {"ok": 4, "failed": 0, "skipped": 0}


# -- the record's MLflow layout --------------------------------------------------------------------------------
def test_the_parent_carries_freeze_aggregates_and_the_experiment_opens_on_runs(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = ["random"]\nenvironments = ["constant"]\n')
    summary, _ = run(tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri(tmp_path))
    parent = client.get_run(summary["parent_run_id"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags[layout.EXPERIMENT_KIND] == layout.EXPERIMENT_KIND_VALUE
    assert parent.data.tags[layout.MLFLOW_GIT_COMMIT] == parent.data.tags[layout.GIT_COMMIT]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {layout.SUITE_JSON, layout.REQUIREMENTS, layout.AGGREGATES_JSON} <= artifacts
    freeze = Path(client.download_artifacts(parent.info.run_id, layout.REQUIREMENTS, str(tmp_path)))
    assert any(line.startswith("mlflow==") for line in freeze.read_text().splitlines())
    mean = sum(c["metrics"]["score"] for c in summary["cells"]) / 2
    assert parent.data.metrics["agg/random/constant/score/mean"] == pytest.approx(mean)
    cell = mlflow_cell_runs(uri(tmp_path), "rec")[0]
    assert "curve/curve" in cell.data.metrics, "curves under their own keys"
    assert [m.step for m in client.get_metric_history(cell.info.run_id, "score")] == [0], "no curve in the value"
    assert cell.data.tags[layout.SCHEMA_VERSION] == "2"
    reported = run_harness(*PLUGINS, "report", summary["parent_run_id"], "--tracking-uri", uri(tmp_path),
                           "--bootstrap-resamples", "200", cwd=tmp_path, env=ENV)  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    attached = {a.path for a in client.list_artifacts(parent.info.run_id, layout.REPORT_DIR)}
    assert {f"{layout.REPORT_DIR}/index.html", f"{layout.REPORT_DIR}/report.md"} <= attached
    machine = json.loads((tmp_path / "results" / "journal" / "rec--smoke.jsonl").read_text().splitlines()[0])
    assert {"mujoco", "gymnasium", "scipy", "cupy", "cuda"} <= set(machine["record"]["machine"]["versions"])


def test_reader_needs_no_artifact_download_for_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = ["random"]\nenvironments = ["constant"]\n')
    summary, _ = run(tmp_path)
    from harness.tracking.reader import RunStore

    store = RunStore(uri(tmp_path))
    downloads: list[str] = []
    original = store.client.download_artifacts
    monkeypatch.setattr(store.client, "download_artifacts", lambda *a, **k: downloads.append(a[1]) or original(*a, **k))
    loaded = store.load(summary["parent_run_id"])
    assert downloads == [layout.SUITE_JSON], "one download per suite run, none per cell"
    by_seed = {c.seed: c for c in loaded.cells}
    assert {c["metrics"]["score"] for c in summary["cells"]} == {c.metrics["score"] for c in loaded.cells}
    assert isinstance(next(iter(by_seed)), int)
    assert [step for step, _ in by_seed[0].curves["curve"]] == [0, 1, 2, 3, 4]


# -- 9. durability ---------------------------------------------------------------------------------------------
def test_every_result_is_fsynced_before_append_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.record import Cell, CellResult, ComponentRef
    from harness.tracking import journal as journal_module

    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        real_fsync(fd)
        synced_sizes.append(os.fstat(fd).st_size)

    monkeypatch.setattr(journal_module.os, "fsync", counting_fsync)
    ref = ComponentRef("a", "1", "p", "0")
    journal = journal_module.Journal(tmp_path / "j.jsonl")
    for seed in range(3):
        cell = Cell("s", "smoke", ref, ref, seed, ("m",), {}, None, f"a/b/seed={seed}", key=f"k{seed}")
        journal.append_result(CellResult(cell=cell, status="ok", record_id=f"r{seed}"))
        # fsynced, and the fsync covered the whole line just written.
        assert synced_sizes[-1] == (tmp_path / "j.jsonl").stat().st_size
    assert len(synced_sizes) == 3
    journal.mark_synced("r0", "run", "store", "parent")
    assert len(synced_sizes) == 3, "delivery marks are flushed, not fsynced (a lost one costs a search)"


# -- the schema ------------------------------------------------------------------------------------------------
def test_version_1_records_are_migrated_and_unknown_versions_refused() -> None:
    from harness.record import CellResult

    ref = {"name": "iql", "version": "1", "plugin": "p", "plugin_version": "0", "params": {"path": "a/b"}}
    v1 = {
        "cell": {"suite": "s", "profile": "smoke", "algorithm": ref, "environment": ref, "seed": 3,
                 "metrics": ["m"], "budget": {}, "timeout_s": None, "label": "iql/hopper/seed=3", "key": "k"},
        "status": "ok", "metrics": {"m": 1.0}, "schema_version": 1,
    }  # fmt: skip
    migrated = CellResult.from_dict(v1)
    assert (migrated.cell.algorithm_label, migrated.cell.environment_label) == ("iql", "hopper")
    assert migrated.schema_version == 2 and migrated.cell.algorithm.code_version == ""
    with pytest.raises(ValueError, match="schema_version 9"):
        CellResult.from_dict({**v1, "schema_version": 9})


def test_results_dir_copies_keep_their_meaning(tmp_path: Path) -> None:
    """A results folder moved elsewhere (CI artifacts) still resumes: nothing in the journal is a path key."""
    suite(tmp_path, 'algorithms = ["noop"]\nenvironments = ["constant"]\n')
    run(tmp_path, "--no-tracking")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(tmp_path / "results", moved / "results")
    shutil.copy(tmp_path / "rec.toml", moved / "rec.toml")
    again = load_json(run_harness(*PLUGINS, "run", "rec.toml", "--no-tracking", "--json", cwd=moved, env=ENV))
    assert again["already_finished"] == 1


def test_keys_for_seeds_equal_serializing_the_whole_payload() -> None:
    import hashlib
    from dataclasses import asdict

    from harness.record import Cell, ComponentRef, canonical_json

    algorithm = ComponentRef("iql", "1", "p", "0", {"path": "a/b", "beta": 3.0}, code_version="abc")
    environment = ComponentRef("hopper", "2", "q", "1", {"n": [1, 2]}, code_version="def")
    for metric_code in ({}, {"score": "0123"}):
        keys = Cell.keys_for_seeds(algorithm, environment, [0, 7, -3], ("m", "a"), {"steps": 5}, metric_code)
        for seed, key in zip([0, 7, -3], keys, strict=True):
            payload = {"algorithm": asdict(algorithm), "environment": asdict(environment), "seed": seed,
                       "metrics": ["a", "m"], "budget": {"steps": 5}}  # fmt: skip
            if metric_code:
                payload["metric_code"] = metric_code
            assert key == hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


def test_suite_json_carries_what_ranking_and_hardware_checks_need(tmp_path: Path) -> None:
    suite(tmp_path, '[[matrix]]\nalgorithms = ["noop"]\nenvironments = ["constant"]\nmetrics = ["wall_time_s"]\n')
    summary, _ = run(tmp_path, plugins=(*PLUGINS, "-p", "harness_core_metrics.plugin"))
    loaded = load_latest(tmp_path, summary["parent_run_id"])
    assert loaded.metric_info["wall_time_s"].depends_on_hardware is True
    assert loaded.metric_info["score"].depends_on_hardware is None  # the fixture metric does not say
    assert loaded.metric_info["score"].comparable_across_tasks is False
