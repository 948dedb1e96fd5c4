"""Tests of the example plugin, as its author would write them (fixtures from harness.testing)."""

from __future__ import annotations

import pytest
from harness_example_bandits.bandits import make_bernoulli_bandit, regret, run_epsilon_greedy, run_ucb1


def test_plugin_conforms_to_the_harness_contract(harness_plugin_check) -> None:
    report = harness_plugin_check("example-bandits")
    passed = {(item.check, item.subject) for item in report.items if item.status == "passed"}
    assert ("runs one smoke cell", "'bandit-ucb1' on 'bandit-bernoulli'") in passed
    assert ("same seed gives the same result", "'bandit-epsilon-greedy' on 'bandit-bernoulli'") in passed


def test_best_arm_is_ahead_by_the_gap(harness_cell_context) -> None:
    bandit = make_bernoulli_bandit(params={"arms": 5, "gap": 0.2}, context=harness_cell_context(seed=3))
    ordered = sorted(bandit.means)
    assert ordered[-1] - ordered[-2] == pytest.approx(0.2)
    assert 0.0 <= ordered[0] and ordered[-1] <= 1.0


def test_ucb1_has_less_regret_than_pure_exploration(harness_cell_context) -> None:
    # UCB1's regret grows like log(steps); pulling arms at random (epsilon=1) grows linearly.
    params = {"arms": 5, "gap": 0.3}
    context = harness_cell_context(seed=0, budget={"env_steps": 2000})
    bandit = make_bernoulli_bandit(params=params, context=context)
    ucb = regret(outcome=run_ucb1(environment=bandit, params={"exploration": 2.0}, context=context), environment=bandit)
    context = harness_cell_context(seed=0, budget={"env_steps": 2000})
    bandit = make_bernoulli_bandit(params=params, context=context)
    outcome = run_epsilon_greedy(environment=bandit, params={"epsilon": 1.0}, context=context)
    assert ucb < 0.5 * regret(outcome=outcome, environment=bandit)


def test_cells_run_through_the_harness(harness_run_cell) -> None:
    result = harness_run_cell("bandit-ucb1", "bandit-bernoulli", budget={"env_steps": 200}, metrics=["bandit_regret"])
    assert result.status == "ok", result.error
    assert result.outcome["steps"] == 200
    assert result.metrics["bandit_regret"] >= 0.0


def test_a_bad_parameter_is_refused_with_its_name(harness_run_cell) -> None:
    from harness import ParamError

    with pytest.raises(ParamError, match=r"bandit-ucb1\.exploration"):
        harness_run_cell("bandit-ucb1", "bandit-bernoulli", algorithm_params={"exploration": "lots"})
    result = harness_run_cell("bandit-ucb1", "bandit-bernoulli", algorithm_params={"exploration": -1.0})
    assert result.status == "failed"
    assert "exploration must be non-negative" in result.error
