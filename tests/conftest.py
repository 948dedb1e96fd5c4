"""Fixtures shared by the core's tests; helpers live in core_support.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    return tmp_path
