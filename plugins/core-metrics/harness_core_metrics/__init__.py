"""harness-core-metrics: wall time, CPU time and peak memory of a cell, for every suite.

The hooks are in :mod:`harness_core_metrics.plugin`, the module the ``harness`` entry point names, as in every
first-party plugin.
"""
