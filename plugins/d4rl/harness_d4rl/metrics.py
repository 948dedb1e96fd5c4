"""The ``normalized_score`` metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness import CellContext


def normalized_score(
    *, outcome: Mapping[str, Any], environment: Any = None, context: CellContext | None = None
) -> float | None:
    """Mean D4RL normalized score of the final evaluation episodes.

    Uses the episode returns an algorithm reports (``eval_returns``, else ``return_mean``) and the
    environment's ``normalized_score``, so the reference returns are the dataset's (D4RL's, or a Minari
    dataset's own). None (nothing logged) when the outcome has no returns or the environment no reference.
    """
    normalize = getattr(environment, "normalized_score", None)
    if normalize is None:
        value = outcome.get("normalized_score")
        return None if value is None else float(value)
    returns = outcome.get("eval_returns")
    if returns:
        return float(np.mean([normalize(float(r)) for r in returns]))
    if outcome.get("return_mean") is not None:
        return float(normalize(float(outcome["return_mean"])))
    return None
