"""The command line's own rules: root options after the command name, and what an interrupted command says."""

from __future__ import annotations

from harness.cli.main import hoist_root_options, interrupted_message


def test_root_options_after_the_command_name_mean_the_same():
    assert hoist_root_options(["run", "smoke", "--results-dir", "r", "--jobs", "2"]) == [
        "--results-dir", "r", "run", "smoke", "--jobs", "2",
    ]  # fmt: skip
    assert hoist_root_options(["-p", "m", "report", "latest", "--results-dir=r", "--strict"]) == [
        "-p", "m", "--results-dir=r", "--strict", "report", "latest",
    ]  # fmt: skip
    # After "--", nothing is an option; a command's own options stay where they are.
    assert hoist_root_options(["run", "x", "--", "--results-dir", "y"]) == ["run", "x", "--", "--results-dir", "y"]
    assert hoist_root_options(["--results-dir", "r", "run", "x", "-p", "m"]) == [
        "--results-dir",
        "r",
        "run",
        "x",
        "-p",
        "m",
    ]


def test_an_interrupted_command_says_what_running_it_again_does():
    assert "resumes" in interrupted_message(["run", "smoke"])
    assert "skipped" in interrupted_message(["--results-dir", "r", "run", "smoke"])
    nightly = interrupted_message(["nightly", "smoke", "--results-dir", "r"])
    assert "does not resume" in nightly and "from scratch" in nightly and "incomplete" in nightly
    assert "does not resume" in interrupted_message(["-p", "plugin", "calibrate", "smoke"])
