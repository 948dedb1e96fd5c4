"""D4RL-format offline RL datasets for harness (plugin module: :mod:`harness_d4rl.plugin`)."""

__version__ = "0.1.0"
