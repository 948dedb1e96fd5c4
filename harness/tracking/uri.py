"""Tracking URIs: the embedded default, the SQLite file behind one, preparing a new one, and one spelling per
store (the journal records deliveries per store)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def store_identity(tracking_uri: str) -> str:
    """One spelling per URI (an SQLite file by its resolved path, a server without a trailing slash).

    Only a hint, to tell without connecting that a journal has nothing left for the store at this URI: a
    store *is* the id it holds (:attr:`harness.tracking.store.MlflowTracker.store`), since a moved folder or
    another spelling of a server's address names the same store by a different URI. Journals of earlier
    versions key deliveries by this spelling."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        return f"sqlite:///{database.resolve()}"
    return tracking_uri.rstrip("/")


def default_tracking_uri(results_dir: Path) -> str:
    """``$HARNESS_TRACKING_URI``, else the embedded SQLite store ``results/mlflow.db``."""
    return os.environ.get("HARNESS_TRACKING_URI") or f"sqlite:///{(results_dir / 'mlflow.db').resolve()}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


def prepare_sqlite_store(tracking_uri: str) -> None:
    """Create a new SQLite store by copying a pristine, already-migrated one.

    Creating an MLflow SQLite store runs every schema migration (seconds, tens of seconds on a loaded machine);
    the result depends only on the MLflow version, so it is built once per version under
    ``$HARNESS_CACHE_DIR`` (default ``~/.cache/harness``) and copied for every new store after that.
    """
    target = sqlite_path(tracking_uri)
    if target is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    from importlib.metadata import version

    cache = Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness"))
    template = cache / f"mlflow-{version('mlflow')}-empty.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = template.with_suffix(f".{os.getpid()}.tmp")
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{building}").search_experiments()
        _dispose_sqlite_engines()
        os.replace(building, template)  # atomic: concurrent builders never see a half-written template
    copy = target.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(template, copy)
    if not target.exists():
        os.replace(copy, target)
    else:
        copy.unlink()


def _dispose_sqlite_engines() -> None:
    """Close MLflow's cached SQLAlchemy engines so a template file is not held open while it is moved."""
    try:
        from mlflow.store.db import utils

        for engine in getattr(utils, "_engine_cache", {}).values():
            engine.dispose()
    except Exception:  # best effort; a held handle only delays nothing on Linux
        pass
