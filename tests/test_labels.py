"""One label, one configuration (issue 23, case 6): cells merged or split by label are refused at load with both
definitions, the sweep example of docs/suites.md keeps every point, and a renamed label is explicit
(``renamed_from``): undeclared it is refused, declared it shows old and new results as one row."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from core_support import harness_env, load_json, run_harness

from harness.plugins import PluginOptions, load_plugins
from harness.run.suite import Suite, SuiteModel

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "suites.md"


def suite(directory: Path, algorithms: str, name: str = "labels", seeds: str = "[0]") -> Path:
    path = directory / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ndescription = "labels"\nseeds = {seeds}\nmetrics = ["score"]\n'
        f'environments = ["constant"]\nalgorithms = {algorithms}\n'
    )
    return path


def test_two_configurations_under_one_label_are_refused_with_both_definitions(tmp_path: Path) -> None:
    suite(tmp_path, '[{ name = "random", label = "r", params = { scale = 1.0 } }, '
                    '{ name = "random", label = "r", params = { scale = 2.0 } }]')  # fmt: skip
    process = run_harness(*PLUGINS, "run", "labels.toml", "--dry-run", cwd=tmp_path, env=ENV)
    assert process.returncode == 2, process.stdout
    error = process.stderr.replace("\n", " ")
    assert "two different cells are labelled 'r/constant/seed=0'" in error
    assert 'algorithms[0] x environments[0]: random {"scale": 1.0}' in error
    assert 'algorithms[1] x environments[0]: random {"scale": 2.0}' in error
    assert 'own label = "..."' in error and "Traceback" not in process.stderr


def test_one_configuration_under_two_labels_is_refused_not_silently_merged(tmp_path: Path) -> None:
    suite(tmp_path, '[{ name = "random", label = "r2", params = { scale = 2.0 } }, '
                    '{ name = "random", sweep = { scale = [1.0, 2.0] } }]')  # fmt: skip
    process = run_harness(*PLUGINS, "run", "labels.toml", "--dry-run", cwd=tmp_path, env=ENV)
    assert process.returncode == 2, process.stdout
    error = process.stderr.replace("\n", " ")
    assert "one cell has two labels, 'r2/constant/seed=0' and 'random[scale=2.0]/constant/seed=0'" in error
    assert "algorithms[0]" in error and "algorithms[1]" in error
    # The same cell under the same label in two matrices is one cell, as before.
    (tmp_path / "twice.toml").write_text(
        'name = "twice"\ndescription = "d"\nmetrics = ["score"]\n'
        '[[matrix]]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n'
        '[[matrix]]\nalgorithms = ["noop", "random"]\nenvironments = ["constant"]\n'
    )
    fine = run_harness(*PLUGINS, "run", "twice.toml", "--dry-run", "--json", cwd=tmp_path, env=ENV)
    assert fine.returncode == 0, fine.stderr
    assert [cell["label"] for cell in load_json(fine)["cells"]] == ["noop/constant/seed=0", "random/constant/seed=0"]


def test_the_sweep_example_of_the_suites_doc_keeps_its_4_bit_point() -> None:
    """The documented matrix's RTN entries, expanded against the installed quantization plugin: every entry's
    label is its own cell (the example once labelled the sweep's 4-bit point a second time, losing it)."""
    example = re.search(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    data = tomllib.loads(example)
    rtn = [entry for entry in data["matrix"][0]["algorithms"] if isinstance(entry, dict) and entry["name"] == "rtn"]
    assert len(rtn) == 2
    model = SuiteModel.model_validate(
        {"name": "doc", "description": "docs/suites.md", "metrics": ["gap_to_fp"],
         "algorithms": rtn, "environments": ["digits-mlp"]}
    )  # fmt: skip
    registry = load_plugins(PluginOptions())
    _, cells = Suite(model, DOCS).expand(registry)
    labels = sorted(cell.algorithm_label for cell in cells)
    assert len(cells) == 5 and len({cell.key for cell in cells}) == 5, labels
    assert "rtn[weight_bits=4]" in labels


def test_a_renamed_label_is_refused_unless_declared_then_old_and_new_results_are_one_row(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = ("run", "labels.toml", "--tracking-uri", uri, "--json")
    suite(tmp_path, '[{ name = "random", label = "old" }]', seeds="[0, 1]")
    first = run_harness(*PLUGINS, *run, cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr
    baseline = load_json(first)["parent_run_id"]

    suite(tmp_path, '[{ name = "random", label = "new" }]', seeds="[0, 1]")
    for args in (run, ("run", "labels.toml", "--dry-run")):
        refused = run_harness(*PLUGINS, *args, cwd=tmp_path, env=ENV)
        assert refused.returncode == 2, refused.stdout
        assert "algorithm 'old' is now 'new'" in refused.stderr and "renamed_from" in refused.stderr

    suite(tmp_path, '[{ name = "random", label = "new", renamed_from = "old" }]', seeds="[0, 1]")
    resumed = run_harness(*PLUGINS, *run, cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert load_json(resumed)["already_finished"] == 2 and load_json(resumed)["parent_run_id"] == baseline
    from harness.tracking.reader import RunStore

    assert {cell.algorithm for cell in RunStore(uri).load(baseline).cells} == {"new"}

    fresh = run_harness(*PLUGINS, *run, "--no-resume", cwd=tmp_path, env=ENV)
    assert fresh.returncode == 0, fresh.stderr
    candidate = load_json(fresh)["parent_run_id"]
    assert candidate != baseline
    # The baseline's cells are tagged with the old label in MLflow; compared under the candidate's renames.
    from mlflow.tracking import MlflowClient

    tags = {r.data.tags["harness.algorithm"] for r in MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("labels").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{baseline}'")}  # fmt: skip
    assert tags == {"old"}
    compared = run_harness("compare", baseline, candidate, "--tracking-uri", uri, "--json", cwd=tmp_path, env=ENV)
    assert compared.returncode in (0, 1, 3), compared.stderr
    rows = json.loads(compared.stdout)["rows"]
    assert rows and {row["algorithm"] for row in rows} == {"new"}
