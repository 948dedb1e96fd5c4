"""`harness report` from a real SQLite MLflow store, checked in real headless Chromium.

The run holds hostile strings (a script tag in a metric description, an img tag in an algorithm label, markup
in an error) so escaping is tested where it matters: in the browser, which must log no console error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli.reporting import COMMANDS
from harness.tracking.writer import CellToWrite, write_suite_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE_ALGORITHM = "iql<img src=x onerror=alert(1)>"
MACHINE = {"fingerprint": "fp1", "cpu": "Test CPU <b>bold</b>", "gpu": "none", "versions": {"python": "3.11.0"}}
METRICS = {
    "score": {"unit": "1", "direction": "higher", "threshold": 0.05, "description": "<script>alert(1)</script>"},
    "kernel_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05, "description": "throughput"},
    "kernel_bandwidth_ceiling_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05, "description": ""},
}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    rng = np.random.default_rng(0)
    cells = []
    for algorithm, level in ((HOSTILE_ALGORITHM, 70.0), ("cql", 60.0)):
        for environment in ("hopper", "walker"):
            for seed in range(3):
                value = level + rng.normal(0, 3)
                cells.append(
                    CellToWrite(
                        algorithm,
                        environment,
                        seed,
                        metrics={"score": value, "kernel_gbps": 2 * value, "kernel_bandwidth_ceiling_gbps": 200.0},
                        curves={"score": [(100 * s, value * s / 5) for s in range(6)]},
                    )
                )
    cells.append(CellToWrite("cql", "ant", 0, status="failed", error="ValueError: boom <b>not bold</b>"))
    cells.append(CellToWrite("cql", "humanoid", 0, status="skipped", error="needs a GPU"))
    write_suite_run(MlflowClient(tracking_uri=uri), suite="toy", profile="smoke", metrics=METRICS, cells=cells,
                    machine=MACHINE, git_commit="cafebabe1234", plugins={"toy": "1.0"})  # fmt: skip
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    out = folder / "out"
    result = CliRunner().invoke(group, ["report", "toy", "--out", str(out), "--tracking-uri", uri,
                                        "--bootstrap-resamples", "300"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_report_contains_leaderboards_failures_machine_and_mlflow_command(report_dir: Path):
    html = (report_dir / "index.html").read_text()
    for heading in ("Summary", "Leaderboards", "Curves over training", "measured bandwidth ceiling",
                    "Side by side", "Failed and skipped cells", "Hardware and versions"):  # fmt: skip
        assert heading in html
    assert html.index('id="summary"') < html.index('id="leaderboards"')
    assert "mlflow ui --backend-store-uri sqlite:///" in html
    assert "needs a GPU" in html and "skipped" in html
    assert len(re.findall(r'<svg[^>]*class="plot[ "]', html)) >= 4
    # Nothing is fetched from anywhere: no http(s) resource; one script, ours, allowed by its hash alone.
    assert not re.search(r'(src|href)="https?:', html)
    assert html.count("<script") == 1 and "script-src 'sha256-" in html


def test_every_run_provided_string_is_escaped(report_dir: Path):
    html = (report_dir / "index.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>" not in html and "&lt;b&gt;not bold&lt;/b&gt;" in html
    markdown = (report_dir / "report.md").read_text()
    assert not re.search(r"(?<!\\)<img", markdown) and "\\<img src=x onerror=alert(1)\\>" in markdown
    assert "| 1 | iql" in markdown and "IQM [95% CI]" in markdown


def _chromium(page: Path, screenshot: Path, profile: Path) -> str:
    assert CHROMIUM, "headless Chromium is required: apt-get install -y chromium (make test installs it)"
    process = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,2400", f"--screenshot={screenshot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert screenshot.exists(), process.stderr[-2000:]
    return process.stderr


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line or "Refused to" in line]


def test_chromium_loads_the_page_without_console_errors_and_shows_tables_and_plots(report_dir, tmp_path):
    from PIL import Image

    # The detector must see an error where there is one, or its silence below proves nothing.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefinedAnywhere();</script></body></html>")
    assert _console_errors(_chromium(broken, tmp_path / "broken.png", tmp_path / "profile-a"))

    log = _chromium(report_dir / "index.html", tmp_path / "report.png", tmp_path / "profile-b")
    assert _console_errors(log) == []
    image = np.asarray(Image.open(tmp_path / "report.png").convert("RGB")).astype(float)
    assert image.shape[0] >= 2000
    non_white = (image < 240).any(axis=2)
    assert non_white.mean() > 0.03, "the screenshot is (nearly) blank"
    # Plots are coloured (tab10 blue/orange), tables are dark on light: both must be on screen.
    blueish = (image[..., 2] > image[..., 0] + 60).mean()
    assert blueish > 0.001, "no plot colours in the screenshot"
    table_rows = (non_white[:, :600].mean(axis=1) > 0.5).sum()
    assert table_rows > 3, "no table rules in the screenshot"
