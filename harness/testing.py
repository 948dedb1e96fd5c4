"""The pytest plugin for plugin authors' tests: ``addopts = "-p harness.testing"``.

Its fixtures and helpers live in :mod:`harness.authoring.testing`; this module is the stable public name.
"""

from harness.authoring.testing import (
    assert_plugin_conforms,
    check_plugin,
    harness_cell_context,
    harness_plugin_check,
    harness_run_cell,
    make_cell_context,
    run_cell,
)

__all__ = [
    "assert_plugin_conforms",
    "check_plugin",
    "harness_cell_context",
    "harness_plugin_check",
    "harness_run_cell",
    "make_cell_context",
    "run_cell",
]
