"""SAC and WSRL through their harness entry points on a real env, and the rl metrics on their outcomes."""

from __future__ import annotations

import pytest
from harness_rl import sac, wsrl
from harness_rl.plugin import harness_algorithms, harness_metrics, success_auc

TINY_SAC = {"batch_size": 32, "hidden_dim": 32, "learning_starts": 64}


def spec(name: str):
    return next(s for s in harness_algorithms() if s.name == name)


def test_sac_run_with_demonstrations_reports_online_outcome(tiny_task, make_context):
    context = make_context({"env_steps": 80, "eval_every": 40, "eval_episodes": 1})
    outcome = sac.run(environment=tiny_task, params=spec("sac").resolve_params(TINY_SAC), context=context)
    assert outcome["env_steps"] == 80 and outcome["demonstrations"] == 600
    assert outcome["gradient_steps"] == 80  # 600 demos >= learning_starts: an update after every step
    assert outcome["env_steps_per_s"] > 0 and outcome["gradient_steps_per_s"] > 0
    assert [p["env_steps"] for p in outcome["curve"]] == [40.0, 80.0]
    assert ("return", 80) in [(n, s) for n, s, _ in context.history]
    without = sac.run(
        environment=tiny_task,
        params=spec("sac").resolve_params({**TINY_SAC, "use_demonstrations": False}),
        context=make_context({"env_steps": 80, "eval_every": 40, "eval_episodes": 1}, name="nodemo"),
    )
    assert without["demonstrations"] == 0 and without["gradient_steps"] == 80 - 64 + 1


def test_wsrl_pretrains_warms_up_and_fine_tunes_without_offline_data(tiny_task, make_context):
    context = make_context({"gradient_steps": 20, "env_steps": 60, "eval_every": 30, "eval_episodes": 1})
    params = spec("wsrl").resolve_params({"batch_size": 32, "hidden_dim": 32, "warmup_fraction": 0.6})
    outcome = wsrl.run(environment=tiny_task, params=params, context=context)
    assert outcome["pretrain_gradient_steps"] == 20 and outcome["warmup_steps"] == 36
    # Updates start only once the frozen policy has collected the 36 warm-up transitions.
    assert outcome["gradient_steps"] == 20 + (60 - 36 + 1)
    assert outcome["env_steps"] == 60 and [p["env_steps"] for p in outcome["curve"]] == [30.0, 60.0]
    # A rerun in the same cell folder resumes both phases from their checkpoints and does no more work.
    again = wsrl.run(environment=tiny_task, params=params, context=context)
    assert again["gradient_steps"] == outcome["gradient_steps"] and again["curve"] == outcome["curve"]


def test_success_auc_is_the_normalized_trapezoid_area():
    curve = [{"env_steps": 100.0, "success_rate": 0.5}, {"env_steps": 200.0, "success_rate": 1.0}]
    # From (0, 0): 100 * 0.25 + 100 * 0.75 = 100 over 200 steps.
    assert success_auc(outcome={"curve": curve}) == pytest.approx(0.5)
    assert success_auc(outcome={"curve": [{"env_steps": 10.0, "return": 1.0}]}) is None


def test_specs_params_are_the_config_dataclasses_fields():
    """The config dataclass is the one declaration: the spec's params (read from the source without importing
    torch) are its fields, in order, with its defaults, its comments as descriptions, Literal choices."""
    import dataclasses

    from harness_rl.arsq import ARSQConfig
    from harness_rl.bc import BCConfig
    from harness_rl.iql import IQLConfig
    from harness_rl.riql import RIQLConfig
    from harness_rl.sac import SACConfig
    from harness_rl.td3_bc import TD3BCConfig
    from harness_rl.wsrl import WSRLConfig

    specs = {s.name: s for s in harness_algorithms()}
    assert sorted(specs) == ["arsq", "bc", "iql", "riql", "sac", "td3-bc", "wsrl"]
    configs = {"bc": BCConfig, "td3-bc": TD3BCConfig, "iql": IQLConfig, "riql": RIQLConfig, "arsq": ARSQConfig}
    configs |= {"sac": SACConfig, "wsrl": WSRLConfig}
    for name, config in configs.items():
        specs[name].check()
        fields = dataclasses.fields(config)
        assert [p.name for p in specs[name].params] == [f.name for f in fields] + ["threads"], name
        for field in fields:
            param = specs[name].param(field.name)
            assert param.default == field.default and type(param.default) is type(field.default), (name, field)
            assert len(param.description) > 5, (name, field.name)
    assert specs["iql"].param("compile").choices == ("off", "default", "reduce-overhead", "max-autotune")
    assert specs["td3-bc"].param("protocol").choices == ("offline", "offline-to-online")
    assert "sparse 0/1 reward" in specs["sac"].param("alpha").description  # a comment continued on the next line
    metrics = {m.name for m in harness_metrics()}
    assert metrics == {"return_mean", "success_rate", "success_auc", "gradient_steps_per_s", "env_steps_per_s"}
    for metric in harness_metrics():
        metric.check()


def test_a_config_field_without_comment_or_literal_default_is_a_clear_error(tmp_path, monkeypatch):
    from harness_rl.hyperparameters import params_from_config

    (tmp_path / "rl_bad_config.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass BadConfig:\n    lr: float = 3e-4\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"rl_bad_config.py:5: BadConfig.lr has no comment"):
        params_from_config("rl_bad_config", "BadConfig")


def test_threads_param_sets_torch_threads_for_the_cell_only():
    import torch
    from harness_rl.training import with_torch_threads

    seen = []
    wrapped = with_torch_threads(lambda environment, params, context: seen.append(torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    wrapped(environment=None, params={"threads": before + 1}, context=None)
    wrapped(environment=None, params={"threads": 0}, context=None)
    assert seen == [before + 1, before] and torch.get_num_threads() == before
