"""`harness publish` end to end: real nightly runs of a library in a git repository, a real MLflow store, the
site opened in real headless Chromium (no console errors, every chart drawn, a filter changes what is shown,
no horizontal overflow at 420 px, dark mode)."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from toylib_support import commit, git, harness, make_project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: Appended to a page: draws every chart, then reports what a reader would see, before and after a filter.
PROBE = """
window.addEventListener("load", function () {
  var out = {errors: window.__errors || []};
  try {
    if (window.harnessRenderAll) { window.harnessRenderAll(); }
    var cards = document.querySelectorAll("section.card");
    out.cards = cards.length;
    out.drawn = Array.prototype.filter.call(cards, function (c) { return c.querySelector("svg.main-svg"); }).length;
    out.points = document.querySelectorAll("svg.main-svg .scatterlayer .point").length;
    var metric = document.getElementById("metric-filter");
    if (metric) {
      metric.value = "quality";
      metric.dispatchEvent(new Event("change"));
      out.visible_after_filter = Array.prototype.filter.call(cards, function (c) {
        return !c.classList.contains("hidden");
      }).length;
      out.shown_text = document.getElementById("shown").textContent;
    }
    var state = document.getElementById("state-filter");
    if (state) {
      var rows = document.querySelectorAll("#regressions tbody tr");
      state.value = "fixed";
      state.dispatchEvent(new Event("change"));
      out.rows = rows.length;
      out.rows_after_filter = Array.prototype.filter.call(rows, function (r) {
        return r.style.display !== "none";
      }).length;
    }
    out.overflow = document.documentElement.scrollWidth > window.innerWidth + 1;
    out.background = getComputedStyle(document.documentElement).backgroundColor;
  } catch (e) { out.errors.push(String(e)); }
  var pre = document.createElement("pre"); pre.id = "probe-result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
"""
CATCH = (
    "<script>window.__errors=[];"
    "window.addEventListener('error',function(e){window.__errors.push(String(e.message))});</script>"
)


def probe(page: Path, tmp_path: Path, width: int = 1200, dark: bool = False) -> tuple[dict, str]:
    assert CHROMIUM, "headless Chromium is required: apt-get install -y chromium (make test installs it)"
    text = (
        page.read_text().replace("<head>", "<head>" + CATCH, 1).replace("</body>", f"<script>{PROBE}</script></body>")
    )
    probed = page.with_name(f"probed-{width}-{dark}-{page.name}")
    probed.write_text(text)
    flags = ["--blink-settings=preferredColorScheme=0"] if dark else []
    process = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0", f"--window-size={width},900",
         "--virtual-time-budget=5000", *flags, "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', process.stdout, re.DOTALL)
    assert found, process.stderr[-3000:]
    return json.loads(html_lib.unescape(found.group(1))), process.stderr


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Five nights: two fast commits, then a 20% slowdown that opens an alert, then two more nights of it."""
    project = make_project(tmp_path_factory.mktemp("publish"))
    repo = project / "repo"
    commits = {}
    for name, seconds in (("first", 0.1), ("second", 0.1), ("slow", 0.12), ("fourth", 0.12), ("fifth", 0.12)):
        commits[name] = commit(repo, seconds, 1.0, name)
        night = harness(project, "nightly", "toy.toml", "--promote")
        assert night.returncode == (1 if name == "slow" else 0), night.stdout + night.stderr
    published = harness(project, "publish", "--out", "site", "--json", "--mlflow-url", "http://127.0.0.1:5000/")
    assert published.returncode == 0, published.stdout + published.stderr
    return project / "site", commits


@pytest.mark.slow
def test_publish_shows_the_change_at_its_commit_range_with_its_alert(site: tuple[Path, dict[str, str]]):
    out, commits = site
    index = (out / "index.html").read_text()
    assert "toy-life" in index and ">5<" in index  # five nights
    regressions = (out / "regressions.html").read_text()
    # The range: the last fast night's commit to the night the slowdown appeared.
    assert f"{commits['second'][:10]}..{commits['slow'][:10]}" in regressions
    assert f'title="{commits["second"]}..{commits["slow"]}"' in regressions
    assert "open" in regressions and "wall_time_s" in regressions
    command = (
        f"harness bisect toy-life --profile smoke --repo PATH --good {commits['second']} --bad {commits['slow']} "
        "--metric wall_time_s --only algorithm=work,environment=bench"
    )
    assert command in html_lib.unescape(regressions)
    (page,) = [p for p in out.glob("toy-life-smoke-*.html")]
    data = json.loads(re.search(r'id="history-data">(.*?)</script>', page.read_text(), re.DOTALL).group(1))
    assert [night["sha"] for night in data["nights"]] == list(commits.values())
    wall = next(s for s in data["series"] if s["metric"] == "wall_time_s")
    assert [mark["index"] for mark in wall["alerts"] if mark["state"] == "open"] == [2]
    assert len(wall["values"]) == len(wall["half"]) == 5 and all(half > 0 for half in wall["half"])
    # Each night recorded its commit's date, the order the history is drawn in.
    from harness.tracking.reader import RunStore

    store = RunStore(f"sqlite:///{out.parent / 'results' / 'mlflow.db'}")
    for night in data["nights"]:
        committed = float(git(out.parent / "repo", "show", "-s", "--format=%ct", night["sha"]))
        assert store.load(night["run"]).git_commit_time == committed
    # Each night's report is archived and linked; given --mlflow-url, its MLflow run too (in the nights table).
    assert all((out / night["link"]).is_file() and night["link"] == night["report"] for night in data["nights"])
    for night in data["nights"]:
        assert re.fullmatch(rf"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/{night['run']}", night["mlflow"])
    table = page.read_text().split('<details id="nights">')[1].split("</details>")[0]
    assert table.count("<tr>") == 1 + 5 and table.count(">report</a>") == 5
    assert all(f'href="{night["mlflow"]}"' in table for night in data["nights"])


@pytest.mark.slow
def test_the_site_renders_in_chromium_filters_and_fits_a_phone(site: tuple[Path, dict[str, str]], tmp_path: Path):
    out, _ = site
    (page,) = [p for p in out.glob("toy-life-smoke-*.html")]
    seen, stderr = probe(page, tmp_path)
    assert seen["errors"] == [] and console_errors(stderr) == [], stderr[-2000:]
    assert seen["cards"] == 2 and seen["drawn"] == 2 and seen["points"] >= 10
    assert seen["visible_after_filter"] == 1 and seen["shown_text"] == "1 of 2 charts shown"
    narrow, stderr = probe(page, tmp_path, width=420, dark=True)
    assert not narrow["overflow"] and narrow["errors"] == [] and console_errors(stderr) == []
    assert narrow["background"] != "rgb(255, 255, 255)"  # dark mode
    listed, stderr = probe(out / "regressions.html", tmp_path, width=420)
    assert listed["errors"] == [] and not listed["overflow"] and console_errors(stderr) == []
    assert listed["rows"] == 1 and listed["rows_after_filter"] == 0
    front, _ = probe(out / "index.html", tmp_path, width=420)
    assert not front["overflow"] and front["errors"] == []


def test_publish_refuses_an_unknown_suite_and_an_empty_store_says_so(tmp_path: Path):
    project = make_project(tmp_path)
    commit(project / "repo", 0.0, 1.0, "base")
    assert harness(project, "run", "toy.toml").returncode == 0
    missing = harness(project, "publish", "no-such-suite", "--out", "site")
    assert missing.returncode == 2 and "no suite named 'no-such-suite'" in missing.stderr
    hostile = harness(project, "publish", "../escape", "--out", "site")
    assert hostile.returncode == 2 and not (project / "escape").exists()


def test_nights_are_drawn_in_commit_order_with_runs_of_one_commit_in_run_order():
    from harness.record import SuiteRun
    from harness.report.publish import in_commit_order

    def run(name: str, started: int, commit_time: float | None) -> SuiteRun:
        return SuiteRun(run_id=name, experiment_id="1", suite="s", profile="p", status="finished",
                        start_time_ms=started * 1000, metric_info={}, thresholds={}, cells=[],
                        git_commit=name[0] * 40, git_commit_time=commit_time)  # fmt: skip

    nightly = [run("a1", 100, 90), run("b1", 200, 190), run("b2", 300, 190), run("c1", 400, 390)]
    backfilled = run("0-old", 500, 10)  # run last, for a commit older than every night
    older_harness = run("x-undated", 50, None)  # no recorded date: at its start time, the latest it can be
    ordered = in_commit_order([older_harness, *nightly, backfilled])
    assert [r.run_id for r in ordered] == ["0-old", "x-undated", "a1", "b1", "b2", "c1"]
