"""The full-precision baseline: the environment's float32 model, evaluated as is (every gap is 0 here)."""

from __future__ import annotations

import copy
from typing import Any

from harness import CellContext
from harness_quant.workload import QuantWorkload, quantization_outcome


def run(environment: QuantWorkload, params: dict[str, Any], context: CellContext) -> dict[str, Any]:
    model = copy.deepcopy(environment.model)
    return quantization_outcome(environment, model, quantize_time_s=0.0)
