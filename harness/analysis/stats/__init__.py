"""Statistics for leaderboards and regression verdicts: pure functions over arrays of run scores.

Randomness is always passed in (a :class:`BootstrapConfig`, or a seed), so every number in a report can be
reproduced. Nothing here knows about MLflow or suites.
"""

from harness.analysis.stats.aggregate import (
    AGGREGATES,
    BootstrapConfig,
    Estimate,
    PerformanceProfile,
    aggregate_all,
    aggregate_estimate,
    interquartile_mean,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)
from harness.analysis.stats.changepoint import (
    ChangePoints,
    ChangePointUnavailable,
    LevelChange,
    Segment,
    detect_change_points,
)
from harness.analysis.stats.significance import (
    ChangeTest,
    compare_paired,
    compare_samples,
    minimum_permutation_repeats,
    relative_spread,
    repeats_needed,
)

__all__ = [
    "AGGREGATES",
    "BootstrapConfig",
    "ChangePointUnavailable",
    "ChangePoints",
    "ChangeTest",
    "Estimate",
    "LevelChange",
    "PerformanceProfile",
    "Segment",
    "aggregate_all",
    "aggregate_estimate",
    "compare_paired",
    "compare_samples",
    "detect_change_points",
    "interquartile_mean",
    "minimum_permutation_repeats",
    "performance_profile",
    "probability_of_improvement",
    "relative_spread",
    "repeats_needed",
    "stratified_bootstrap",
]
