"""One leaderboard of own runs, imported published results and a colleague's runs on a real `mlflow server`.

Stores: the own SQLite store (own run), a second SQLite store (the imported paper CSV) and a colleague's
`mlflow server` on 127.0.0.1 (its own SQLite backend). The report is written by the CLI, its paper tables are
checked cell by cell (Markdown and LaTeX) against the aggregates CSV and against scipy's 25% trimmed mean,
provenance and comparability marks are checked in every format, colours are checked to stay with their
algorithm across tasks, and the page is loaded in real headless Chromium.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html as html_lib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from core_support import MlflowServer
from scipy.stats import trim_mean

from harness.cli.reporting import COMMANDS
from harness.report.paper import number
from harness.tracking.writer import CellToWrite, write_suite_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TASKS = ("easy", "medium", "hard")  # the suite's order, not the alphabet's
LEVEL = {"easy": 90.0, "medium": 60.0, "hard": 30.0}
METRICS = {
    "normalized_score": {"unit": "1", "direction": "higher", "comparable_across_tasks": True},
    "wall_time_s": {"unit": "s", "direction": "lower"},
    "episode_return": {"unit": "1", "direction": "higher"},
}
DATA = {task: hashlib.sha256(task.encode()).hexdigest() for task in TASKS}


def cli(*args: str, code: int = 0) -> str:
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    result = CliRunner().invoke(group, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def cells(algorithm: str, seeds: int, offset: float, rng: np.random.Generator, data: dict[str, str]) -> list:
    return [
        CellToWrite(
            algorithm, task, seed,
            metrics={"normalized_score": LEVEL[task] + offset + rng.normal(0, 1.0), "wall_time_s": 2.0 + rng.random(),
                     "episode_return": 1000 * LEVEL[task] + rng.normal(0, 10)},
            inputs=[{"name": task, "origin": "d4rl", "sha256": data[task]}],
        )
        for task in TASKS
        for seed in range(seeds)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def leaderboard(tmp_path_factory: pytest.TempPathFactory, server: MlflowServer) -> dict:
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("leaderboard")
    own = f"sqlite:///{folder / 'own.db'}"
    rng = np.random.default_rng(26)
    mine = write_suite_run(MlflowClient(own), suite="bench", profile="full", metrics=METRICS,
                           cells=cells("NEW", 10, 5.0, rng, DATA),
                           machine={"fingerprint": "fp-mine", "cpu": "My CPU", "gpu": "none"},
                           git_commit="a" * 40)  # fmt: skip
    lines = ["algorithm,environment,seed,metric,value"]
    for algorithm, offset in (("IQL", 0.0), ("CQL", -10.0)):
        for task in TASKS:
            for seed in range(10):
                value = LEVEL[task] + offset + rng.normal(0, 1)
                lines.append(f"{algorithm},{task},{seed},normalized_score,{value:.4f}")
    paper_csv = folder / "paper.csv"
    paper_csv.write_text("\n".join(lines) + "\n")
    papers = f"sqlite:///{folder / 'papers.db'}"  # a second SQLite store: the group's published baselines
    cli("import", "results", str(paper_csv), "--suite", "bench", "--source", "Paper 2021, table 2",
        "--direction", "normalized_score=higher", "--comparable-across-tasks", "normalized_score",
        "--tracking-uri", papers)  # fmt: skip
    # The colleague: another machine, another dataset for "hard", another direction for episode_return, and
    # the label NEW too (two rows, never pooled with ours), with 3 seeds against our 10.
    theirs_metrics = {**METRICS, "episode_return": {"unit": "1", "direction": "lower"}}
    other_data = {**DATA, "hard": "0" * 64}
    theirs = write_suite_run(MlflowClient(server.uri), suite="bench", profile="full", metrics=theirs_metrics,
                             cells=cells("TD3BC", 3, -5.0, rng, other_data) + cells("NEW", 3, 4.0, rng, other_data),
                             machine={"fingerprint": "fp-theirs", "cpu": "Their CPU", "gpu": "A100"},
                             git_commit="b" * 40)  # fmt: skip
    out = folder / "report"
    cli("report", mine, f"{papers}#source=Paper 2021, table 2", f"{server.uri}#{theirs}", "--suite", "bench",
        "--format", "html,md,tex,csv", "--out", str(out), "--bootstrap-resamples", "300",
        "--tracking-uri", own)  # fmt: skip
    return {"folder": folder, "out": out, "mine": mine, "theirs": theirs, "server": server.uri,
            "paper_csv": paper_csv, "own": own, "papers": papers}  # fmt: skip


def aggregates(out: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO((out / "aggregates.csv").read_text())))


def test_one_leaderboard_ranks_own_imported_and_remote_runs_with_provenance(leaderboard: dict) -> None:
    out, folder = leaderboard["out"], leaderboard["folder"]
    page, markdown, latex = ((out / name).read_text() for name in ("index.html", "report.md", "tables.tex"))
    rows = aggregates(out)
    score = [r for r in rows if r["metric"] == "normalized_score"]
    mine, theirs = f"NEW (run {leaderboard['mine'][:8]})", f"NEW (run {leaderboard['theirs'][:8]})"
    assert {r["algorithm"] for r in score} == {"IQL", "CQL", "TD3BC", mine, theirs}
    # Columns in the suite's order, the pooled aggregate last.
    assert list(dict.fromkeys(r["environment"] for r in score)) == [*TASKS, "pooled"]
    provenance = {r["algorithm"]: r["provenance"] for r in score}
    assert provenance["IQL"].startswith("reported: Paper 2021, table 2 (imported into sqlite: papers.db")
    assert provenance["TD3BC"].startswith(f"run {leaderboard['theirs'][:8]} (bench:full) in {leaderboard['server']}")
    assert "Their CPU + A100" in provenance["TD3BC"] and "commit bbbbbbbbbbbb" in provenance["TD3BC"]
    assert "in sqlite: own.db, measured on My CPU" in provenance[mine]
    for text in (page, markdown):
        assert "reported: Paper 2021, table 2" in text and leaderboard["server"] in text
    # No local path anywhere unless asked for (--show-paths).
    for text in (page, markdown, latex, (out / "aggregates.csv").read_text()):
        assert str(folder) not in text
    # Comparability: the colleague's episode_return is left out (another direction), with the reason.
    plain = markdown.replace("\\_", "_")
    assert "episode_return of run" in plain and "direction 'lower' (not 'higher')" in plain
    assert {r["algorithm"] for r in rows if r["metric"] == "episode_return"} == {mine}
    # Their rows of a hardware-dependent metric and of the other dataset are marked, with reasons.
    timing = {r["algorithm"]: r["marks"] for r in rows if r["metric"] == "wall_time_s"}
    assert "depends on the hardware" in timing["TD3BC"] and "Their CPU" in timing["TD3BC"]
    assert timing[mine] == ""
    assert "dataset of hard (sha256) differs" in provenance_marks(score, "TD3BC")
    assert "⚑" in page and "depends on the hardware" in page
    # Unequal numbers of seeds are handled and shown.
    n_runs = {(r["algorithm"], r["environment"]): int(r["n_runs"]) for r in score}
    assert n_runs[("TD3BC", "easy")] == 3 and n_runs[(mine, "easy")] == 10 and n_runs[(mine, "pooled")] == 30
    assert "(n=3)" in markdown and "(n=10)" in markdown


def provenance_marks(rows: list[dict], algorithm: str) -> str:
    return next(r["marks"] for r in rows if r["algorithm"] == algorithm)


def test_aggregates_are_rliable_iqm_of_the_scores(leaderboard: dict) -> None:
    from harness.tracking.reader import RunStore

    run = RunStore(leaderboard["own"]).load(leaderboard["mine"])
    table = run.scores_by_algorithm("normalized_score")["NEW"]
    mine = f"NEW (run {leaderboard['mine'][:8]})"
    rows = {r["environment"]: r for r in aggregates(leaderboard["out"])
            if r["metric"] == "normalized_score" and r["algorithm"] == mine}  # fmt: skip
    for task in TASKS:
        assert float(rows[task]["iqm"]) == pytest.approx(trim_mean(table[task], 0.25), rel=1e-12)
    pooled = np.concatenate([table[task] for task in TASKS])  # the (runs x tasks) matrix, all scores
    assert float(rows["pooled"]["iqm"]) == pytest.approx(trim_mean(pooled, 0.25), rel=1e-12)
    low, high = float(rows["pooled"]["ci_low"]), float(rows["pooled"]["ci_high"])
    assert low < float(rows["pooled"]["iqm"]) < high


def matrix(lines: list[str]) -> dict[tuple[str, str], str]:
    """A Markdown or LaTeX matrix as (algorithm, column) -> cell text."""
    separator = "&" if "\\\\" in lines[0] else "|"

    def split(line: str) -> list[str]:
        parts = [part.strip() for part in line.strip().rstrip("\\").strip().strip("|").split(separator)]
        return parts

    header = split(lines[0])
    found = {}
    for line in lines[1:]:
        parts = split(line)
        name = re.sub(r"(<sup>.*?</sup>|\\textsuperscript\{.*?\})", "", parts[0]).replace("\\_", "_").strip()
        for column, cell in zip(header[1:], parts[1:], strict=True):
            found[(name, column)] = cell.replace("\\[", "[").replace("\\]", "]")  # Markdown's escapes
    return found


def check_matrix(cells: dict[tuple[str, str], str], rows: list[dict], bold: str) -> None:
    assert len(cells) == len(rows)
    for row in rows:
        cell = cells[(row["algorithm"].replace("\\", ""), row["environment"])]
        value = number(float(row["iqm"]))
        assert (bold.format(value) in cell) == (row["best"] == "true"), (row, cell)
        assert value in cell
        if row["ci_low"]:
            assert f"[{number(float(row['ci_low']))}, {number(float(row['ci_high']))}]" in cell


def test_markdown_and_latex_matrices_match_the_aggregates_cell_by_cell(leaderboard: dict) -> None:
    out = leaderboard["out"]
    score = [r for r in aggregates(out) if r["metric"] == "normalized_score"]
    markdown = (out / "report.md").read_text()
    start = markdown.index("**normalized\\_score**")
    table = [line for line in markdown[start:].splitlines()[2:] if line.startswith("|")]
    table = [table[0], *table[2:]]  # drop the |---| line
    table = table[: 1 + len({r["algorithm"] for r in score})]
    check_matrix(matrix(table), score, "**{}**")
    latex = (out / "tables.tex").read_text()
    block = latex[latex.index("% harness paper table: normalized\\_score") :]
    body = block[block.index("\\toprule") : block.index("\\bottomrule")].splitlines()
    rows = [line for line in body if line.endswith("\\\\")]
    header = rows[0].replace("Algorithm ($\\uparrow$)", "algorithm")
    check_matrix(matrix([header, *rows[1:]]), score, "\\textbf{{{}}}")
    # booktabs and nothing else: no \usepackage but booktabs named, only its rules.
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex and "\\hline" not in latex
    assert "reported: Paper 2021, table 2" in latex.replace("\\_", "_")


def test_each_algorithm_keeps_one_colour_across_tasks_and_the_axes_have_ticks(leaderboard: dict) -> None:
    page = (leaderboard["out"] / "index.html").read_text()
    forest = re.search(r'<svg[^>]*class="plot forest".*?</svg>', page, re.DOTALL)
    assert forest
    colours: dict[str, set[str]] = {}
    for title, body in re.findall(r"<g><title>(.*?)</title>(.*?)</g>", forest.group(0), re.DOTALL):
        algorithm = html_lib.unescape(title).split(" ", 1)[1].split(": IQM")[0]
        colours.setdefault(algorithm, set()).update(re.findall(r'stroke="(#[0-9a-f]{6})"', body))
    assert len(colours) == 5 and all(len(found) == 1 for found in colours.values()), colours
    assert len({next(iter(found)) for found in colours.values()}) == 5  # five algorithms, five colours
    assert forest.group(0).count('class="tick"') >= 4 * 4  # ticks on the axis of every task and the pooled one
    assert 'class="tick-label"' in forest.group(0)


PROBE = """
(function () {
  var out = {};
  var q = function (s) { return document.querySelectorAll(s); };
  out.paperTables = q("table.paper").length;
  out.bold = q("table.paper td.best strong").length;
  out.provenanceRows = q("table.provenance tbody tr").length;
  out.reported = Array.prototype.filter.call(q("table.provenance td"), function (td) {
    return td.textContent.indexOf("reported: Paper 2021") === 0; }).length;
  out.paperWidth = document.querySelector("table.paper").getBoundingClientRect().width;
  out.ticks = q("svg.forest line.tick").length;
  var pre = document.createElement("pre"); pre.id = "probe-result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def test_the_page_in_headless_chromium(leaderboard: dict, tmp_path: Path) -> None:
    assert CHROMIUM, "headless Chromium is required: apt-get install -y chromium (make test installs it)"
    text = (leaderboard["out"] / "index.html").read_text()
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    text = text.replace("script-src ", f"script-src 'sha256-{digest}' ", 1).replace(
        "</body>", f"<script>{PROBE}</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(text)
    process = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,900", "--virtual-time-budget=3000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', process.stdout, re.DOTALL)
    assert found, process.stderr[-3000:]
    facts = json.loads(html_lib.unescape(found.group(1)))
    assert facts["paperTables"] == 3 and facts["bold"] >= 4 and facts["paperWidth"] > 300
    assert facts["provenanceRows"] == 3 and facts["reported"] == 1 and facts["ticks"] >= 16
    assert "Uncaught" not in process.stderr and "Content Security Policy" not in process.stderr


def test_export_of_several_stores_keeps_provenance(leaderboard: dict) -> None:
    out = leaderboard["folder"] / "both.json"
    cli("export", leaderboard["mine"], f"{leaderboard['papers']}#source=Paper 2021, table 2",
        f"{leaderboard['server']}#{leaderboard['theirs']}",
        "--suite", "bench", "--format", "json", "--out", str(out), "--tracking-uri", leaderboard["own"])  # fmt: skip
    rows = json.loads(out.read_text())
    stores = {row["store"] for row in rows}
    assert stores == {"sqlite: own.db", "sqlite: papers.db", leaderboard["server"]}
    reported = {row["source"] for row in rows if row["reported"]}
    assert reported == {"Paper 2021, table 2"}
    assert {row["cpu"] for row in rows if row["store"] == leaderboard["server"]} == {"Their CPU"}
