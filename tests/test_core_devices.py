"""Which device a cell runs on: specs' resources and the run's --device, recorded with every result."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_support import harness_env, load_json, mlflow_cell_runs, run_harness

from harness.errors import CellSkipped
from harness.plugins import PluginOptions
from harness.record import Cell, ComponentRef, make_cell
from harness.run import worker
from harness.run.executors.ray import cell_resources
from harness.specs import Resources

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1", CUDA_VISIBLE_DEVICES="")
SUITE = 'name = "devices"\ndescription = "d"\nseeds = [0]\nmetrics = ["score"]\n'
SUITE += 'algorithms = ["device-probe", "noop"]\nenvironments = ["constant"]\n'


def _cell(algorithm: str = "device-probe") -> Cell:
    ref = ComponentRef(name=algorithm, version="1", plugin="fixture_plugin", plugin_version="0")
    environment = ComponentRef(name="constant", version="1", plugin="fixture_plugin", plugin_version="0")
    return make_cell(suite="s", profile="smoke", algorithm=ref, environment=environment, seed=0, metrics=("score",))


@pytest.mark.parametrize(
    ("device", "visible", "expected"),
    [("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cuda", True, "cuda")],
)
def test_a_cell_that_can_use_a_gpu_goes_where_the_run_says(monkeypatch, device, visible, expected) -> None:
    # The probe is the only thing faked: this machine has no GPU to show the "visible" half of the table.
    monkeypatch.setattr(worker, "gpu_visible", lambda: visible)
    assert worker.choose_device(device, Resources(uses_gpu=True), Resources()) == expected


def test_device_cuda_without_a_gpu_skips_and_gpu_only_specs_always_get_cuda(monkeypatch) -> None:
    monkeypatch.setattr(worker, "gpu_visible", lambda: False)
    with pytest.raises(CellSkipped, match="--device cuda"):
        worker.choose_device("cuda", Resources(uses_gpu=True))
    assert worker.choose_device("cpu", Resources(gpus=1)) == "cuda"
    assert worker.choose_device("cuda", Resources()) == "cpu"  # a CPU-only spec ignores --device


def test_ray_asks_for_a_gpu_only_when_the_cell_would_use_it(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    options = PluginOptions(("fixture_plugin",), autoload=False)
    assert cell_resources(_cell(), options, cluster_has_gpu=False, device="auto").gpus == 0
    assert cell_resources(_cell(), options, cluster_has_gpu=True, device="auto").gpus == 1
    assert cell_resources(_cell(), options, cluster_has_gpu=False, device="cuda").gpus == 1  # placement then skips it
    assert cell_resources(_cell(), options, cluster_has_gpu=True, device="cpu").gpus == 0
    assert cell_resources(_cell("noop"), options, cluster_has_gpu=True, device="cuda").gpus == 0


def test_the_device_is_recorded_in_the_summary_and_mlflow(tmp_path: Path) -> None:
    (tmp_path / "devices.toml").write_text(SUITE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = run_harness("-p", "fixture_plugin", "run", "devices.toml", "--json", "--tracking-uri", uri,
                          cwd=tmp_path, env=ENV)  # fmt: skip
    assert process.returncode == 0, process.stderr
    cells = {c["label"].split("/")[0]: c for c in load_json(process)["cells"]}
    assert cells["device-probe"]["device"] == "cpu" and cells["device-probe"]["metrics"]["score"] == 0.0
    assert {run.data.tags["harness.device"] for run in mlflow_cell_runs(uri, "devices")} == {"cpu"}

    forced = run_harness("-p", "fixture_plugin", "run", "devices.toml", "--json", "--no-tracking", "--no-resume",
                         "--device", "cuda", cwd=tmp_path, env=ENV)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    cells = {c["label"].split("/")[0]: c for c in load_json(forced)["cells"]}
    assert cells["device-probe"]["status"] == "skipped" and "no CUDA GPU" in cells["device-probe"]["error"]
    assert cells["noop"]["status"] == "ok" and cells["noop"]["device"] == "cpu"


def test_an_unknown_device_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "devices.toml").write_text(SUITE)
    process = run_harness("-p", "fixture_plugin", "run", "devices.toml", "--device", "tpu", cwd=tmp_path, env=ENV)
    assert process.returncode == 2 and "tpu" in process.stderr
