"""docs/plugins.md stays in sync with the hookspecs' docstrings and with the example plugin it embeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import hookspecs
from harness.authoring.scaffold import docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_reference_section_matches_the_hookspecs() -> None:
    text = DOC.read_text(encoding="utf-8")
    hint = "run `python -m harness.authoring.scaffold.docs` to regenerate docs/plugins.md"
    assert docs.stale_hooks(text, DOC) == [], hint
    assert docs.stale_files(text, DOC) == [], hint
    assert docs.render_document(text, DOC) == text


def test_every_hook_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    names = {function.__name__ for function in docs.hook_functions()}
    declared = {name for name in vars(hookspecs) if name.startswith("harness_")}
    assert names == declared
    for name in names:
        assert f"#### `{name}`" in text


def test_a_changed_docstring_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text(encoding="utf-8")
    function = hookspecs.harness_metrics
    monkeypatch.setattr(function, "__doc__", function.__doc__ + "\n    Metrics must also be pure functions.\n")
    assert docs.stale_hooks(text, DOC) == ["harness_metrics"]


def test_a_changed_example_file_is_detected(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    edited = text.replace(
        'HARNESS_API_VERSION = "1.0"\n\n#: The contract', 'HARNESS_API_VERSION = "1.0"\n#: The contract', 1
    )
    assert edited != text
    assert docs.stale_files(edited, DOC) == ["examples/harness-example-bandits/harness_example_bandits/plugin.py"]


def test_check_mode_of_the_generator_script(tmp_path: Path) -> None:
    stale = tmp_path / "docs" / "plugins.md"
    stale.parent.mkdir()
    # A copy outside the repository (no embedded example files) whose reference section is empty.
    text = DOC.read_text(encoding="utf-8").replace("<!-- file:", "<!-- nofile:")
    start = text.index(docs.START_MARKER) + len(docs.START_MARKER)
    stale.write_text(text[:start] + "\n" + text[text.index(docs.END_MARKER) :])
    command = [sys.executable, "-m", "harness.authoring.scaffold.docs", "--check", str(stale)]
    completed = subprocess.run(command, capture_output=True, text=True)
    assert completed.returncode == 1 and "harness_algorithms" in completed.stderr
    assert subprocess.run([*command[:-2], str(stale)], capture_output=True, text=True).returncode == 0
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
