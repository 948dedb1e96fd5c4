"""Fixtures shared by the core's tests; helpers live in core_support.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from core_support import MlflowServer


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    return tmp_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` on 127.0.0.1 with its own store, one per test module that asks for it."""
    instance = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    instance.start()
    try:
        yield instance
    finally:
        instance.kill()
