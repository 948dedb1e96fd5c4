"""Suite files: validation errors name the file, line or key, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_support import harness_env, run_harness

from harness.errors import BadInput
from harness.plugins import PluginOptions, load_plugins
from harness.run.suite import load_suite_file

GOOD = """
name = "toy"
description = "toy suite"
seeds = [0, 1]
metrics = ["score"]
algorithms = ["noop", {name = "random", sweep = {scale = [1.0, 2.0]}}]
environments = ["constant"]

[profiles.smoke]
seeds = [5]
budget = {steps = 2}
params = {"constant.value" = 3.0}
"""


@pytest.fixture(scope="module")
def registry():
    return load_plugins(PluginOptions(extra_modules=("fixture_plugin",), autoload=False))


def suite_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def expand(tmp_path: Path, registry, text: str, profile: str | None = None, overrides=()):
    return load_suite_file(suite_file(tmp_path, text)).expand(registry, profile, overrides)


def test_expansion_sweeps_profiles_and_stable_keys(tmp_path: Path, registry) -> None:
    profile, cells = expand(tmp_path, registry, GOOD)
    assert profile == "smoke"
    assert [c.label for c in cells] == [
        "noop/constant/seed=5",
        "random[scale=1.0]/constant/seed=5",
        "random[scale=2.0]/constant/seed=5",
    ]
    assert [c.algorithm.params.get("scale") for c in cells[1:]] == [1.0, 2.0]
    # The profile's "constant.value" override addresses the environment by name.
    assert {c.environment.params["value"] for c in cells} == {3.0}
    assert cells[0].budget == {"steps": 2}
    assert cells[0].algorithm.plugin == "fixture_plugin"
    _, again = expand(tmp_path, registry, GOOD)
    assert [c.key for c in again] == [c.key for c in cells]
    _, other_seed = expand(tmp_path, registry, GOOD, overrides=["seeds=[6]"])
    assert other_seed[0].key != cells[0].key


def test_set_overrides(tmp_path: Path, registry) -> None:
    _, cells = expand(tmp_path, registry, GOOD, overrides=["budget.steps=9", "timeout_s=3", "seeds=[1,2]"])
    assert {c.seed for c in cells} == {1, 2}
    assert cells[0].budget["steps"] == 9 and cells[0].timeout_s == 3


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (GOOD.replace('"noop"', '"nop"'), (), ["unknown algorithm 'nop'", "Did you mean 'noop'", "Available:"]),
        (GOOD.replace('"constant"', '"constnt"'), (), ["unknown environment 'constnt'", "constant"]),
        (GOOD.replace('["score"]', '["scor"]'), (), ["unknown metric 'scor'", "score"]),
        (GOOD, ["random.scal=2"], ["random has no parameter 'scal'", "scale"]),
        (GOOD, ["constant.value=true"], ["constant.value", "expected a number"]),
        (GOOD, ["nothing.x=1"], ["names no algorithm or environment"]),
        (GOOD, ["bogus=1"], ["--set bogus: unknown key"]),
        (
            GOOD.replace('algorithms = ["noop"', 'algorithms = ["other-kind"'),
            (),
            ["'other-kind' runs on environments of kind ['something-else']", "'constant' is of kind 'toy'"],
        ),
    ],
)
def test_meaning_errors_name_what_is_wrong(tmp_path: Path, registry, text, overrides, expected) -> None:
    with pytest.raises(BadInput) as caught:
        expand(tmp_path, registry, text, overrides=overrides)
    for fragment in expected:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("seeds = [0, 1]", "seeds = [0, 1"), ["TOML syntax error", "line 5"]),
        (GOOD + "\nalgorithm_typo = 3\n", ["algorithm_typo: unknown key"]),
        (GOOD.replace("seeds = [0, 1]", 'seeds = "zero"'), ["seeds:", "valid list"]),
        (GOOD.replace("[profiles.smoke]", "[profiles.smoke]\nbudjet = 3"), ["profiles.smoke.budjet: unknown key"]),
        (GOOD.replace('name = "toy"', 'name = "Bad Name"'), ["name:", "pattern"]),
    ],
)
def test_shape_errors_name_file_and_key(tmp_path: Path, text, expected) -> None:
    path = suite_file(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_suite_file(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_unknown_profile_lists_profiles(tmp_path: Path, registry) -> None:
    with pytest.raises(BadInput, match=r"no profile 'ful' \(profiles: smoke\)"):
        expand(tmp_path, registry, GOOD, profile="ful")


def test_bad_input_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    suite_file(tmp_path, GOOD.replace('"noop"', '"nop"'))
    results = tmp_path / "out"
    process = run_harness(
        "-p",
        "fixture_plugin",
        "--results-dir",
        str(results),
        "run",
        "suite.toml",
        cwd=tmp_path,
        env=harness_env(HARNESS_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    assert process.returncode == 2
    assert "unknown algorithm 'nop'" in process.stderr
    assert "Traceback" not in process.stderr
    assert not results.exists()
    missing = run_harness("run", "no-such-suite", cwd=tmp_path)
    assert missing.returncode == 2 and "unknown suite 'no-such-suite'" in missing.stderr
    bad_set = run_harness("-p", "fixture_plugin", "run", "suite.toml", "--set", "x", cwd=tmp_path)
    assert bad_set.returncode == 2


def test_the_default_suite_shows_every_first_party_suite() -> None:
    """`make run` runs suites/smoke.toml: one small cell family of each first-party suite."""
    import json
    import subprocess
    import sys

    from core_support import REPO

    process = subprocess.run(
        [sys.executable, "-m", "harness.cli.main", "run", "smoke", "--dry-run", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    environments = {cell["environment"]["name"] for cell in json.loads(process.stdout)["cells"]}
    assert {"softmax-rows", "digits-mlp", "hopper-medium-replay", "metaworld-reach"} <= environments
