"""The report page as a reader sees it, in real headless Chromium, from a real SQLite MLflow store.

A probe script is added to a copy of the page (its hash added to the page's Content-Security-Policy, nothing
else loosened); it measures the laid-out page, clicks a column header and writes what it found into the DOM,
which ``--dump-dom`` returns. The facts checked: the summary comes first, every plot is an SVG with a size,
a sort reorders rows, dark mode changes the colours, and nothing overflows a 420 px wide window.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import json
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
MACHINE = {"fingerprint": "fp1", "cpu": "Test CPU", "gpu": "none"}
METRICS = {
    "normalized_score": {"unit": "1", "direction": "higher", "threshold": 0.05, "comparable_across_tasks": True},
    "wall_time_s": {"unit": "s", "direction": "lower", "threshold": 0.1},
    "effective_bits": {"unit": "bit", "direction": "lower", "threshold": 0.05},
    "kernel_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05},
    "copy_ceiling_gbps": {"unit": "GB/s", "direction": "higher", "threshold": 0.05},
}
PROBE = """
(function () {
  var out = {};
  var q = function (s) { return document.querySelectorAll(s); };
  out.scrollWidth = document.documentElement.scrollWidth;
  out.innerWidth = window.innerWidth;
  out.svgs = Array.prototype.map.call(q("svg.plot"), function (s) {
    var r = s.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; });
  out.summaryTop = document.getElementById("summary").getBoundingClientRect().top;
  out.leaderboardsTop = document.getElementById("leaderboards").getBoundingClientRect().top;
  out.summaryTables = q("table.summary").length;
  out.summaryRows = q("table.summary tbody tr").length;
  out.summaryColumns = q("table.summary thead th").length;
  out.bestCells = q("table.summary td.best").length;
  out.background = getComputedStyle(document.documentElement).backgroundColor;
  var table = document.querySelector("table.summary");
  var first = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
    return r.cells[0].textContent.trim(); }); };
  out.before = first();
  table.querySelectorAll("thead th")[0].click();
  out.afterAscending = first();
  table.querySelectorAll("thead th")[0].click();
  out.afterDescending = first();
  var pre = document.createElement("pre"); pre.id = "probe-result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("page")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    rng = np.random.default_rng(1)
    cells = []
    for algorithm, level, bits in (("alpha", 0.8, 4.0), ("beta", 0.7, 3.0), ("gamma", 0.5, 2.0)):
        for environment in ("hopper", "walker"):
            for seed in range(5):
                cells.append(
                    CellToWrite(
                        algorithm, environment, seed,
                        metrics={"normalized_score": level + rng.normal(0, 0.02), "wall_time_s": 2 + rng.random(),
                                 "effective_bits": bits, "kernel_gbps": 50 * level + rng.random(),
                                 "copy_ceiling_gbps": 60 + rng.random()},
                        curves={"normalized_score": [(10 * s, level * s / 4 + rng.normal(0, 0.01)) for s in range(5)]},
                    )
                )  # fmt: skip
    client = MlflowClient(tracking_uri=uri)
    run_id = write_suite_run(
        client, suite="page", profile="smoke", metrics=METRICS, cells=cells, machine=MACHINE, git_commit="cafebabe1234"
    )
    # The suite's [report] declaration as suite.json carries it (written here as the suite model would).
    suite_json = folder / "suite.json"
    suite_json.write_text(json.dumps({"suite": "page", "profile": "smoke", "metrics": METRICS,
                                      "report": {"pareto": [["effective_bits", "normalized_score"]]}}))  # fmt: skip
    client.log_artifact(run_id, str(suite_json))
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    out = folder / "out"
    result = CliRunner().invoke(group, ["report", "page", "--out", str(out), "--tracking-uri", uri,
                                        "--bootstrap-resamples", "200"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "index.html"


def _probe(page: Path, tmp_path: Path, width: int, dark: bool = False) -> tuple[dict, str]:
    assert CHROMIUM, "headless Chromium is required: apt-get install -y chromium (make test installs it)"
    text = page.read_text()
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    text = text.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    text = text.replace("</body>", f"<script>{PROBE}</script></body>")
    probed = tmp_path / f"probed-{width}-{dark}.html"
    probed.write_text(text)
    flags = ["--blink-settings=preferredColorScheme=0"] if dark else []  # 0: dark
    process = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--enable-logging=stderr", "--v=0", f"--window-size={width},900", "--virtual-time-budget=3000", *flags,
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', process.stdout, re.DOTALL)
    assert found, process.stderr[-3000:]
    return json.loads(html_lib.unescape(found.group(1))), process.stderr


def test_page_opens_on_the_summary_and_every_plot_renders(page: Path, tmp_path: Path):
    facts, log = _probe(page, tmp_path, 1200)
    assert [line for line in log.splitlines() if ":CONSOLE" in line or "Refused to" in line] == []
    assert facts["summaryTop"] < facts["leaderboardsTop"]
    # One table per ranking group: pooled (normalized_score only), hopper and walker (all five metrics).
    assert facts["summaryTables"] == 3
    assert facts["summaryRows"] == 3 * 3  # alpha, beta, gamma in each
    assert facts["summaryColumns"] == (1 + 1) + 2 * (1 + 5)
    assert facts["bestCells"] >= 11
    html = page.read_text()
    # One interval plot per metric, curves, roofline (a ceiling exists), the declared Pareto plot, a profile.
    assert len(facts["svgs"]) == len(re.findall(r'<svg[^>]*class="plot[ "]', html)) >= 5 + 1 + 1 + 1
    assert all(w > 200 and h > 100 for w, h in facts["svgs"]), facts["svgs"]
    assert 'id="tradeoffs"' in html and 'class="roofline"' in html


def test_a_header_click_sorts_the_rows(page: Path, tmp_path: Path):
    facts, _ = _probe(page, tmp_path, 1200)
    assert facts["afterAscending"] == sorted(facts["before"])
    assert facts["afterDescending"] == sorted(facts["before"], reverse=True)


def test_no_horizontal_overflow_at_420px_and_dark_mode(page: Path, tmp_path: Path):
    narrow, _ = _probe(page, tmp_path, 420)
    assert narrow["scrollWidth"] <= narrow["innerWidth"], narrow
    light, _ = _probe(page, tmp_path, 1200)
    dark, _ = _probe(page, tmp_path, 1200, dark=True)
    assert light["background"] == "rgb(255, 255, 255)"
    assert dark["background"] != light["background"], (light["background"], dark["background"])
