"""Hostile names and text (issue 23, cases 8-11), through the real CLI and a real SQLite MLflow store: names that
would escape the results folder are refused with where they came from, CSV cells a spreadsheet would run are
neutralized, escape sequences reach the terminal made visible, and a damaged store is a clear error (exit 2)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from core_support import harness_env, run_harness

from harness.cli.reporting import COMMANDS
from harness.paths import UnsafeName, path_for, safe_name
from harness.tracking.writer import CellToWrite, write_suite_run
from harness.untrusted import csv_cell, visible

ENV = harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
PLUGINS = ("-p", "fixture_plugin", "-p", "hostile_plugin")
MACHINE = {"fingerprint": "fp1", "cpu": "Test CPU", "gpu": "none"}
METRICS = {"score": {"unit": "1", "direction": "higher", "threshold": 0.05}}
#: Window title, clipboard write (OSC 52), screen clear, and rich markup that must print as written.
ESCAPES = "\x1b]0;pwned\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J[bold red]styled[/]"


def cli_group() -> click.Group:
    group = click.Group("harness")
    for command in COMMANDS:
        group.add_command(command)
    return group


def planted_store(tmp_path: Path, **cell: object) -> tuple[str, str]:
    """A store with one suite run, as a colleague's shared store could hold it; (uri, parent run id)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    (tmp_path / "shared").mkdir(exist_ok=True)
    cells = [CellToWrite(**{"algorithm": "iql", "environment": "hopper", "seed": 0, "metrics": {"score": 1.0}, **cell})]
    run_id = write_suite_run(MlflowClient(tracking_uri=uri), suite="shared", profile="smoke", metrics=METRICS,
                             cells=cells, machine=MACHINE)  # fmt: skip
    return uri, run_id


# -- case 8: names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["a/../../../victim/uv", "..", "/etc/passwd", "a\\b", "x\x1b[2Jy", "tab\tname", "", "ok..not"]
)
def test_safe_name_refuses_separators_traversals_absolute_paths_and_control_characters(name: str) -> None:
    with pytest.raises(UnsafeName) as refused:
        safe_name(name, "profile", "suite file s.toml: [profiles]")
    message = str(refused.value)
    assert "suite file s.toml: [profiles]" in message and "profile name" in message
    assert "\x1b" not in message  # the name is quoted with its control characters visible
    assert safe_name("short-v2.1_x", "profile", "here") == "short-v2.1_x"
    with pytest.raises(UnsafeName):
        path_for(Path("results"), "{suite}--{profile}.jsonl", "here", suite="ok", profile=name)


def test_a_profile_name_that_escapes_the_results_folder_is_refused_and_nothing_outside_is_touched(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "uv.lock").write_text("precious")
    (tmp_path / "s.toml").write_text(
        'name = "s"\ndescription = "d"\nmetrics = ["score"]\nalgorithms = ["noop"]\nenvironments = ["constant"]\n'
        '[profiles."a/../../../victim/uv"]\nseeds = [0]\n'
    )
    for args in (("--dry-run",), ("--json",), ("--no-resume",)):
        process = run_harness(
            *PLUGINS, "--results-dir", "results", "run", "s.toml", "--profile", "a/../../../victim/uv", *args,
            cwd=tmp_path, env=ENV,
        )  # fmt: skip
        assert process.returncode == 2, process.stderr
        assert "profile name 'a/../../../victim/uv'" in process.stderr, process.stderr
        assert "s.toml: [profiles.'a/../../../victim/uv']" in process.stderr and "it contains '..'" in process.stderr
        assert "Traceback" not in process.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["uv.lock"] and (victim / "uv.lock").read_text() == "precious"
    assert not (tmp_path / "results" / "journal").exists()


def test_a_label_with_a_separator_or_control_character_is_refused_at_load_with_its_key(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        'name = "s"\ndescription = "d"\nmetrics = ["score"]\nenvironments = ["constant"]\n'
        'algorithms = [{ name = "noop", label = "ok" }, { name = "noop", label = "x\\u001b]0;t\\u0007", '
        "params = {} }]\n"
    )
    process = run_harness(*PLUGINS, "run", "s.toml", "--dry-run", cwd=tmp_path, env=ENV)
    assert process.returncode == 2
    assert "s.toml: algorithms[1].label: label name 'x\\x1b]0;t\\x07'" in process.stderr, process.stderr
    assert "\x1b" not in process.stderr


def test_a_traversal_planted_in_a_shared_store_cannot_make_report_or_export_write_outside(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri, run_id = planted_store(tmp_path)
    # What `harness import pytest-benchmark --profile ../../../outside` wrote before names were checked.
    MlflowClient(tracking_uri=uri).set_tag(run_id, "harness.profile", "../../../outside")
    results = tmp_path / "deep" / "er" / "results"
    group = cli_group()
    for command in (["report", run_id], ["export", run_id, "--format", "csv"]):
        result = CliRunner().invoke(group, [*command, "--tracking-uri", uri, "--results-dir", str(results)])
        assert result.exit_code == 2, result.output
        assert "profile name '../../../outside'" in result.output and f"tracking store {uri}, run {run_id}" in (
            result.output
        )
    assert not list(tmp_path.rglob("*outside*"))


def test_import_refuses_a_profile_that_would_plant_a_traversal(tmp_path: Path) -> None:
    source = tmp_path / "bench.json"
    source.write_text('{"benchmarks": [{"name": "t", "stats": {"mean": 1.0}}], "machine_info": {}}')
    process = run_harness(
        "import", "pytest-benchmark", str(source), "--profile", "../../x", "--results-dir", "results",
        cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert process.returncode == 2
    assert "--profile: profile name '../../x'" in process.stderr and "Traceback" not in process.stderr


# -- case 9: CSV formula injection ---------------------------------------------------------------------------
def test_csv_cell_prefixes_formulas_and_leaves_numbers_alone() -> None:
    for formula in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "=-1"):
        assert csv_cell(formula) == "'" + formula
    for kept in ("-0.5", "+1e-3", "3", "-12", ".5", "plain", "a=b", -1.5, 7, None):
        assert csv_cell(kept) == kept


def test_export_csv_neutralizes_formulas_in_labels_params_and_errors_and_keeps_numbers_numeric(
    tmp_path: Path,
) -> None:
    uri, run_id = planted_store(
        tmp_path,
        algorithm='=HYPERLINK("http://x","y")',
        environment="@SUM(1+1)",
        metrics={"score": -1.5},
        params={"lr": -0.5, "note": "+cmd", "tabbed": "\tx", "cr": "\r=1"},
    )
    out = tmp_path / "t.csv"
    result = CliRunner().invoke(
        cli_group(), ["export", run_id, "--format", "csv", "--out", str(out), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["algorithm"] == '\'=HYPERLINK("http://x","y")' and row["environment"] == "'@SUM(1+1)"
    assert row["param.algorithm.note"] == "'+cmd" and row["param.algorithm.tabbed"] == "'\tx"
    assert row["param.algorithm.cr"] == "'\r=1"
    assert row["param.algorithm.lr"] == "-0.5" and float(row["value"]) == -1.5  # numbers stay numbers
    assert "'-1.5" not in out.read_text()
    for fmt in ("json",):  # typed formats keep the text as it is
        data = CliRunner().invoke(cli_group(), ["export", run_id, "--format", fmt, "--out", "-", "--tracking-uri", uri])
        assert '"=HYPERLINK' in data.output


# -- case 10: terminal escapes -------------------------------------------------------------------------------
def test_visible_shows_control_characters_and_keeps_text() -> None:
    assert visible("a\x1b[2Jb\x07\u202e") == "a\\x1b[2Jb\\x07\\u202e"
    assert visible("line\nnext\r") == "line\\x0anext\\x0d"
    assert visible("line\nnext\r", keep_newlines=True) == "line\nnext\\x0d"
    assert visible("héllo [b]x[/b] ✓") == "héllo [b]x[/b] ✓"


def test_escape_sequences_from_a_plugin_reach_the_terminal_visible_and_markup_prints_as_written(
    tmp_path: Path,
) -> None:
    text = ESCAPES.replace("\x1b", "\\u001b").replace("\x07", "\\u0007")
    (tmp_path / "s.toml").write_text(
        'name = "s"\ndescription = "d"\nmetrics = ["score"]\nenvironments = ["constant"]\n'
        f'algorithms = [{{ name = "say", params = {{ text = "{text}" }} }}]\n'
    )
    process = run_harness(*PLUGINS, "run", "s.toml", "--no-tracking", cwd=tmp_path, env=ENV)
    assert process.returncode == 1, process.stderr
    both = process.stdout + process.stderr
    assert "\x1b" not in both and "\x07" not in both
    assert "\\x1b]0;pwned\\x07" in process.stderr  # the error line, and the cell's output tail
    assert "[bold red]styled[/]" in process.stdout  # the summary's "not ok" table: markup printed as written


def test_labels_from_a_shared_store_are_printed_visible_by_compare(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri, first = planted_store(tmp_path, algorithm=ESCAPES)
    second = write_suite_run(
        MlflowClient(tracking_uri=uri), suite="shared", profile="smoke", metrics=METRICS, machine=MACHINE,
        cells=[CellToWrite(ESCAPES, "hopper", 0, metrics={"score": 1.0})],
    )  # fmt: skip
    wide = {**ENV, "COLUMNS": "400"}  # one table row per line, so the label is not folded across lines
    process = run_harness("compare", first, second, "--tracking-uri", uri, cwd=tmp_path, env=wide)
    assert process.returncode in (0, 3), process.stderr
    assert "\x1b" not in process.stdout and "\x07" not in process.stdout
    assert "\\x1b]52;c;ZWNobyBwd25lZA==\\x07" in process.stdout and "[bold red]styled[/]" in process.stdout


# -- case 11 (store half): a damaged store -------------------------------------------------------------------
@pytest.mark.parametrize("damage", [b"\x00garbage" * 2000, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_store_is_a_clear_error_naming_the_file_from_report_and_export(tmp_path: Path, damage: bytes) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "mlflow.db").write_bytes(damage)
    for command in (("report", "smoke"), ("export", "smoke"), ("export", "latest", "--suite", "smoke")):
        process = run_harness("--results-dir", "results", *command, cwd=tmp_path, env=ENV)
        assert process.returncode == 2, process.stderr
        assert f"{results / 'mlflow.db'}: not a readable MLflow store" in process.stderr.replace("\n", "")
        assert "Traceback" not in process.stderr and "sqlalchemy" not in process.stderr.lower()
