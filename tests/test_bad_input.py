"""Bad input, through the real CLI: a clear error naming the file, key or plugin at fault and what to do (exit 2,
nothing run), nothing silently wrong (non-finite metrics fail their cell), nothing hung (huge suites refused up
front), and stdout that holds the --json document alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from core_support import harness_env, load_json, run_harness

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "record_plugin")


def suite(directory: Path, body: str, name: str = "bad") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "bad input"\nmetrics = ["score"]\n{body}')
    return path


def harness(tmp_path: Path, *args: str, plugins=PLUGINS):
    return run_harness(*plugins, *args, cwd=tmp_path, env=ENV)


BASIC = 'algorithms = ["noop"]\nenvironments = ["constant"]\n'


# -- suites and options ----------------------------------------------------------------------------------------
def test_a_suite_file_that_is_not_utf8_names_the_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "latin"\ndescription = "caf\xe9"\n' + BASIC.encode())
    process = harness(tmp_path, "run", "latin.toml")
    assert process.returncode == 2
    assert "latin.toml: not UTF-8 text (byte 33, line 2" in process.stderr
    assert "Traceback" not in process.stderr


def test_a_bad_file_in_the_suites_folder_is_reported_not_fatal_to_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "suites"
    folder.mkdir()
    suite(folder, BASIC, name="good")
    (folder / "broken.toml").write_bytes(b"name = \xff\xfe\n")
    listed = harness(tmp_path, "list", "suites", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {entry["name"]: entry for entry in json.loads(listed.stdout)}
    assert entries["good"]["problem"] is None
    assert "not UTF-8" in entries["broken"]["problem"] and "broken.toml" in listed.stderr
    ran = harness(tmp_path, "run", "good", "--no-tracking", "--json")
    assert ran.returncode == 0, ran.stderr
    assert load_json(ran)["counts"]["ok"] == 1


@pytest.mark.parametrize("value", ["-5", "nan", "0", "inf"])
def test_a_timeout_that_is_not_a_positive_number_is_refused_in_files_and_set_alike(tmp_path: Path, value: str) -> None:
    suite(tmp_path, f"timeout_s = {value}\n{BASIC}")
    from_file = harness(tmp_path, "run", "bad.toml", "--no-tracking")
    assert from_file.returncode == 2, from_file.stderr
    assert "timeout_s" in from_file.stderr and "expected a positive number of seconds" in from_file.stderr
    suite(tmp_path, BASIC)
    from_set = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--set", f"timeout_s={value}")
    assert from_set.returncode == 2 and "expected a positive number of seconds" in from_set.stderr


def test_an_unknown_threshold_metric_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    suite(tmp_path, f"{BASIC}[thresholds]\nscor = 0.1\n")
    process = harness(tmp_path, "run", "bad.toml", "--dry-run")
    assert process.returncode == 2
    assert "[thresholds] names metric 'scor'" in process.stderr and "Did you mean 'score'?" in process.stderr


def test_an_unknown_budget_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    suite(tmp_path, f"{BASIC}[profiles.smoke]\nbudget = {{repeats = 3, warmup = 1}}\n")
    process = harness(tmp_path, "run", "bad.toml", "--dry-run", "--set", "budget.repeatz=2")
    assert process.returncode == 2
    assert "'repeatz'" in process.stderr and "Did you mean 'repeats'?" in process.stderr
    assert "Known: repeats, warmup" in process.stderr
    fine = harness(tmp_path, "run", "bad.toml", "--dry-run", "--json", "--set", "budget.repeats=2")
    assert fine.returncode == 0 and load_json(fine)["cells"][0]["budget"] == {"repeats": 2, "warmup": 1}


def test_overriding_a_swept_parameter_is_refused(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = [{name = "random", sweep = {scale = [1.0, 2.0]}}]\nenvironments = ["constant"]\n')
    process = harness(tmp_path, "run", "bad.toml", "--dry-run", "--set", "random.scale=3.0")
    assert process.returncode == 2
    assert "overrides a swept parameter (scale is swept over [1.0, 2.0])" in process.stderr


def test_a_million_cell_suite_is_refused_at_once_with_its_count(tmp_path: Path) -> None:
    values = list(range(1000))
    suite(tmp_path, f'seeds = {values}\nalgorithms = [{{name = "random", sweep = {{scale = {values}}}}}]\n'
          'environments = ["constant"]\n')  # fmt: skip
    started = time.monotonic()
    process = harness(tmp_path, "run", "bad.toml", "--dry-run")
    assert process.returncode == 2
    assert "has 1,000,000 cells, more than the limit of 100,000" in process.stderr
    assert "--max-cells" in process.stderr
    assert time.monotonic() - started < 60, "refused before expanding (the subprocess start dominates)"


def test_an_unknown_algorithm_names_the_plugins_that_failed_to_load(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["from-the-broken-plugin"]\nenvironments = ["constant"]\n')
    process = harness(tmp_path, "run", "bad.toml", "--dry-run",
                      plugins=(*PLUGINS, "-p", "authoring_raises_at_import"))  # fmt: skip
    assert process.returncode == 2
    assert "unknown algorithm 'from-the-broken-plugin'" in process.stderr
    assert "Plugins that failed to load" in process.stderr and "authoring_raises_at_import" in process.stderr


# -- values ------------------------------------------------------------------------------------------------------
def test_a_non_finite_metric_fails_its_cell_naming_the_metric(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["nan", "noop"]\nenvironments = ["constant"]\n')
    process = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--json")
    assert process.returncode == 1
    cells = {c["label"].split("/")[0]: c for c in load_json(process)["cells"]}
    assert cells["nan"]["status"] == "failed" and "metric 'score' is nan" in cells["nan"]["error"]
    assert cells["noop"]["status"] == "ok"


def test_a_memory_error_says_what_ran_out(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["out-of-memory"]\nenvironments = ["constant"]\n')
    process = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--json")
    (cell,) = load_json(process)["cells"]
    assert cell["status"] == "failed"
    assert cell["error"].startswith("MemoryError: out of memory") and "GiB available" in cell["error"]


# -- output for scripts --------------------------------------------------------------------------------------------
def test_json_stdout_holds_the_json_alone_and_cell_output_goes_to_its_log(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = ["noisy", {name = "noisy", label = "noisy-fails", params = {fail = true}}]\n'
          'environments = ["constant"]\n')  # fmt: skip
    process = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--json")
    assert process.returncode == 1
    summary = json.loads(process.stdout)  # the whole of stdout is the document
    assert "hello from print" not in process.stdout and "native write" not in process.stdout
    logs = sorted((tmp_path / "results" / "logs").rglob("*.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "hello from print" in text and "native write to fd 1" in text and "a library warning" in text
    failed = next(c for c in summary["cells"] if c["status"] == "failed")
    assert "noisy cell fails" in failed["error"]
    assert "native write to fd 1" in process.stderr, "a failed cell's output is shown"
    shown = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--json", "--no-resume", "--show-output")
    json.loads(shown.stdout)
    assert "hello from print" in shown.stderr


def test_plugins_check_catches_a_non_finite_metric(tmp_path: Path) -> None:
    process = run_harness("-p", "nan_metric_plugin", "plugins", "check", "nan_metric_plugin", cwd=tmp_path, env=ENV)
    assert process.returncode != 0
    assert "is nan (not a finite number)" in process.stdout + process.stderr


def test_only_runs_the_selected_cells_and_records_the_selection(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, 1]\nalgorithms = ["noop", "random"]\n'
          'environments = [{name = "constant", sweep = {value = [1.0, 2.0]}}]\n')  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    process = harness(tmp_path, "run", "bad.toml", "--tracking-uri", uri, "--json",
                      "--only", "algorithm=rand*,constant.value=2.0", "--only", "algorithm=noop,seed=1")  # fmt: skip
    assert process.returncode == 0, process.stderr
    labels = sorted(c["label"] for c in load_json(process)["cells"])
    assert labels == ["noop/constant[value=1.0]/seed=1", "noop/constant[value=2.0]/seed=1",
                      "random/constant[value=2.0]/seed=0", "random/constant[value=2.0]/seed=1"]  # fmt: skip
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(uri).get_run(load_json(process)["parent_run_id"])
    assert json.loads(parent.data.tags["harness.selection"]) == ["algorithm=rand*,constant.value=2.0",
                                                                 "algorithm=noop,seed=1"]  # fmt: skip
    none = harness(tmp_path, "run", "bad.toml", "--dry-run", "--only", "algorithm=iql")
    assert none.returncode == 2 and "selects none of its 8 cells" in none.stderr
    bad = harness(tmp_path, "run", "bad.toml", "--dry-run", "--only", "algo=noop")
    assert bad.returncode == 2 and "unknown field 'algo'" in bad.stderr


def test_the_run_ends_on_a_pivot_table_per_environment(tmp_path: Path) -> None:
    suite(tmp_path, 'seeds = [0, 1, 2]\nalgorithms = ["noop", "raise"]\n'
          'environments = [{name = "constant", sweep = {value = [1.0, 2.0]}}]\n')  # fmt: skip
    process = harness(tmp_path, "run", "bad.toml", "--no-tracking")
    assert process.returncode == 1
    out = process.stdout
    assert "bad (smoke): constant[value=1.0]" in out and "bad (smoke): constant[value=2.0]" in out
    assert "1 ± 0 (n=3)" in out and "2 ± 0 (n=3)" in out
    assert out.count("ValueError: this algorithm always fails") == 6


def test_a_report_table_declares_trade_offs_and_refuses_unknown_metrics(tmp_path: Path) -> None:
    suite(tmp_path, f'{BASIC}[report]\npareto = [["score", "scor"]]\n')
    process = harness(tmp_path, "run", "bad.toml", "--dry-run")
    assert process.returncode == 2 and "[report] pareto names metric 'scor'" in process.stderr
    suite(tmp_path, f'{BASIC}[report]\npareto = [["score", "score"]]\n')
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    ran = harness(tmp_path, "run", "bad.toml", "--tracking-uri", uri, "--json")
    assert ran.returncode == 0, ran.stderr
    from harness.tracking.reader import RunStore

    assert RunStore(uri).load(load_json(ran)["parent_run_id"]).report_options == {"pareto": [["score", "score"]]}


def test_a_crashed_cell_keeps_what_it_printed_before_dying(tmp_path: Path) -> None:
    suite(tmp_path, 'algorithms = [{name = "crash", params = {how = "segfault"}}]\nenvironments = ["constant"]\n')
    process = harness(tmp_path, "run", "bad.toml", "--no-tracking", "--json")
    assert process.returncode == 1
    (cell,) = load_json(process)["cells"]
    assert "SIGSEGV" in cell["error"]
    journal = (tmp_path / "results" / "journal" / "bad--smoke.jsonl").read_text().splitlines()
    record = next(json.loads(line)["record"] for line in journal if json.loads(line)["type"] == "result")
    assert "Fatal Python error: Segmentation fault" in record["output_tail"]
