"""harness-rl: reinforcement-learning algorithms for the harness (BC, TD3+BC, IQL, RIQL, ARSQ, SAC, WSRL).

The hook module is :mod:`harness_rl.plugin` (the ``harness`` entry point); importing either imports nothing
heavy. Each algorithm is one file (``bc.py``, ``td3_bc.py``, ``iql.py``, ``riql.py``, ``arsq.py``, ``sac.py``,
``wsrl.py``) on a shared foundation: ``data.py`` (transitions, replay buffer), ``training.py`` (the one
checkpointed training loop), ``evaluation.py`` (episodes, the outcome), ``networks.py`` and
``hyperparameters.py`` (config dataclass -> spec parameters).
"""
