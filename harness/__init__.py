"""harness: a plugin-based benchmark harness for ML research code.

The package face re-exports what plugin authors use; everything else lives in submodules.
"""

from harness.context import CellContext, file_sha256
from harness.errors import BadInput, CellSkipped
from harness.hookspecs import hookimpl
from harness.record import Cell, CellResult, ComponentRef, RunInfo
from harness.specs import (
    AlgorithmSpec,
    EnvironmentSpec,
    MetricSpec,
    Param,
    ParamError,
    Resources,
    SpecError,
    outcome_value,
)

__version__ = "0.1.0"

#: The version of the hook API (``harness/hookspecs.py``). A plugin may declare the version it was written
#: against as ``HARNESS_API_VERSION`` in its module; a different major version is refused at load time.
HOOK_API_VERSION = "1.0"

__all__ = [
    "HOOK_API_VERSION",
    "AlgorithmSpec",
    "BadInput",
    "Cell",
    "CellContext",
    "CellResult",
    "CellSkipped",
    "ComponentRef",
    "EnvironmentSpec",
    "MetricSpec",
    "Param",
    "ParamError",
    "Resources",
    "RunInfo",
    "SpecError",
    "__version__",
    "file_sha256",
    "hookimpl",
    "outcome_value",
]
