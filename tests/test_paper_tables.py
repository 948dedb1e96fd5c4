"""Pure pieces of the paper tables and leaderboards, on small hand-checkable inputs."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.ranking import RankedRow, _improvement, describe_change, ordered_environments
from harness.analysis.stats import Estimate
from harness.report.paper import PaperTable, latex_escape, number, to_latex, to_markdown
from harness.report.plots import algorithm_colours, nice_ticks


def test_probability_of_improvement_counts_ties_half_as_all_pairs_do() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        x = rng.integers(0, 4, (5, int(rng.integers(1, 7)))).astype(float)
        y = rng.integers(0, 4, (1, int(rng.integers(1, 7)))).astype(float)
        pairs = (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2)) + 0.5 * (x[:, :, None] == y[:, None, :]).mean(
            axis=(1, 2)
        )
        assert np.allclose(_improvement(x, y), pairs, rtol=0, atol=1e-12)
    assert _improvement([1.0, 2.0], [2.0, 3.0]) == (0 + 0.5 + 0 + 0) / 4


def test_an_exact_tie_says_tied_and_a_tiny_change_keeps_its_digits() -> None:
    assert describe_change(0.5, 0.5, True)["text"] == "tied"
    assert describe_change(0.1 + 0.2, 0.3, True)["text"] == "tied"  # equal but for float rounding
    assert describe_change(100.0, 99.996, True)["text"] == "-0.004% worse"
    assert describe_change(100.0, 90.0, True)["text"] == "-10.0% worse"


def test_tasks_keep_the_suites_order() -> None:
    assert ordered_environments({"hard", "easy", "medium", "extra"}, ["easy", "medium", "hard"]) == [
        "easy", "medium", "hard", "extra"
    ]  # fmt: skip


def test_colours_are_given_once_per_algorithm_and_ticks_are_round() -> None:
    colours = algorithm_colours(["b", "a", "b", "c"])
    assert list(colours) == ["b", "a", "c"] and len(set(colours.values())) == 3
    assert nice_ticks(0.13, 0.87) == pytest.approx([0.2, 0.4, 0.6, 0.8])


def row(rank: int, name: str, value: float, low: float, high: float, n: int = 5, tied: bool = False) -> RankedRow:
    return RankedRow(rank, name, Estimate(value, low, high, n, 1), tied=tied, best=rank == 1)


def test_latex_and_markdown_of_a_hostile_label() -> None:
    label = "a_b & $x$ {100%} #1 ~\\"
    table = PaperTable(
        "score_%", "1", "higher", ["t_1"], [label, "b"],
        {(label, "t_1"): row(1, label, 0.5, 0.4, 0.6), ("b", "t_1"): row(1, "b", 0.49, 0.3, 0.55, 3, tied=True)},
    )  # fmt: skip
    latex = to_latex(table)
    assert r"a\_b \& \$x\$ \{100\%\} \#1 \textasciitilde{}\textbackslash{}" in latex
    assert r"\textbf{0.5} {\scriptsize [0.4, 0.6]}" in latex and r"\textbf{0.49}" in latex  # tied: bold too
    assert "(n=3)" in latex and "(n=5)" in latex  # unequal seeds are shown
    markdown = to_markdown(table)
    assert "a\\_b & $x$ {100%} #1 ~\\\\" in markdown and "**0.5** \\[0.4, 0.6\\]" in markdown
    assert latex_escape("\x1b[31m") == "[31m" and number(90003.2) == "90003" and number(0.123456) == "0.1235"


def test_the_probability_matrix_takes_a_task_with_one_run_a_side_beside_resampled_ones() -> None:
    from harness.analysis.ranking import improvement_matrix
    from harness.analysis.stats import BootstrapConfig

    scores = {"a": [[3.0], [1.0, 2.0, 3.0]], "b": [[1.0], [0.0, 2.0, 2.0]]}  # task 0: one run each, never resampled
    found = improvement_matrix(scores, True, BootstrapConfig(n_resamples=200, seed=1))
    estimate = found[("a", "b")]
    # Task 0: a beats b (1.0). Task 1: 3 beats all three (3); 2 beats 0 and ties 2 twice (1 + 0.5 + 0.5); 1 beats
    # 0 (1): 6 of 9 pairs.
    assert estimate.value == (1.0 + 6 / 9) / 2 and estimate.n_tasks == 2 and estimate.n_runs == 8
    assert estimate.low <= estimate.value <= estimate.high
