"""Reading offline RL datasets in their real formats: D4RL HDF5 files and local Minari datasets.

D4RL files store one row per environment step: ``observations``, ``actions``, ``rewards``, ``terminals``,
``timeouts`` (and, in the v2 files, ``next_observations`` and ``infos/*``). Algorithms consume the
``qlearning_dataset`` layout built from them; :func:`qlearning_dataset` reproduces D4RL's function
(``d4rl/__init__.py``) exactly, including its quirks, so that results on real D4RL files match the literature:

* the next observation is the *following row's* observation (a stored ``next_observations`` is not used);
* a transition whose ``timeouts`` flag is set is dropped (its next row starts another episode), a transition
  whose ``terminals`` flag is set is kept;
* the last row is always dropped (it has no following row);
* ``(N, 1)`` rewards and terminals are squeezed to ``(N,)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness import BadInput
from harness_d4rl.references import d4rl_file_name, generated_file_name

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
# Keys whose first dimension must equal the number of rows; ``infos/*`` are checked too.
ROW_KEYS = (*REQUIRED_KEYS, "timeouts", "next_observations")
QLEARNING_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


class DatasetError(BadInput):
    """A dataset is missing or malformed; the message names the file, the key and what to do."""


def default_dataset_dir() -> Path:
    """D4RL's dataset folder: ``$D4RL_DATASET_DIR``, else ``~/.d4rl/datasets`` (as D4RL itself)."""
    return Path(os.environ.get("D4RL_DATASET_DIR", os.path.expanduser("~/.d4rl/datasets")))


def _squeeze_column(array: np.ndarray) -> np.ndarray:
    return array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array


def read_d4rl_hdf5(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every dataset in a D4RL HDF5 file (``infos/qpos`` and the like keep their slash) and the file's attrs.

    Raises :class:`DatasetError` naming the key when a required key is missing, an array has the wrong number
    of rows or dimensions, or the file cannot be read as HDF5.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist")
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}

            def visit(name: str, item: Any) -> None:
                if isinstance(item, h5py.Dataset):
                    arrays[name] = item[()]

            handle.visititems(visit)
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file ({exc}); regenerate or re-download it") from None
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: missing key {missing[0]!r} (a D4RL file needs {', '.join(REQUIRED_KEYS)}; "
            f"it has {', '.join(sorted(arrays)) or 'nothing'})"
        )
    for key in ("rewards", "terminals", "timeouts"):
        if key in arrays:
            arrays[key] = _squeeze_column(np.asarray(arrays[key]))
    rows = len(arrays["observations"])
    for key, array in arrays.items():
        if key in ROW_KEYS or key.startswith("infos/"):
            if np.ndim(array) == 0 or len(array) != rows:
                length = "a scalar" if np.ndim(array) == 0 else f"{len(array)} rows"
                raise DatasetError(
                    f"{path}: key {key!r} has {length} but 'observations' has {rows}; every per-step array "
                    "must have one row per step"
                )
    for key, ndim in (("observations", 2), ("actions", 2), ("rewards", 1), ("terminals", 1), ("timeouts", 1)):
        if key in arrays and arrays[key].ndim != ndim:
            raise DatasetError(f"{path}: key {key!r} has shape {arrays[key].shape}, expected {ndim} dimensions")
    check_finite(arrays, str(path))
    return arrays, attrs


def check_finite(arrays: dict[str, np.ndarray], where: str) -> None:
    """Refuse NaN or inf in the arrays training reads: they would train silently into a NaN score.

    Raises :class:`DatasetError` naming the file, the key and the first bad row.
    """
    for key in ("observations", "actions", "rewards", "next_observations"):
        array = arrays.get(key)
        if array is None or not np.issubdtype(np.asarray(array).dtype, np.floating):
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))
            row = int(bad_rows[0])
            value = np.asarray(array[row]).ravel()[~np.isfinite(np.asarray(array[row]).ravel())][0]
            raise DatasetError(
                f"{where}: key {key!r} holds a non-finite value ({value}) at row {row} "
                f"({len(bad_rows)} row(s) in all); fix or regenerate the file"
            )


def _plain(value: Any) -> Any:
    """HDF5 attribute values as plain Python (bytes to str, numpy scalars to Python numbers)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def qlearning_dataset(
    dataset: Mapping[str, np.ndarray], terminate_on_end: bool = False, max_episode_steps: int = 1000
) -> dict[str, np.ndarray]:
    """Transitions ``(s, a, r, s', terminal)`` from per-step rows, exactly as D4RL's ``qlearning_dataset``.

    ``terminate_on_end=True`` keeps the transitions at a timeout (D4RL's flag of the same name; their next
    observation is then the next episode's first one). Without a ``timeouts`` key, as in D4RL, an episode is
    taken to end after ``max_episode_steps`` steps. Arrays are float32; ``terminals`` is 0.0 or 1.0.
    """
    rows = len(dataset["rewards"])
    terminals = np.asarray(_squeeze_column(np.asarray(dataset["terminals"]))).astype(bool)
    if "timeouts" in dataset:
        final_timestep = _squeeze_column(np.asarray(dataset["timeouts"])).astype(bool)[: rows - 1]
    else:
        final_timestep = _final_steps_by_count(terminals, rows, max_episode_steps, terminate_on_end)
    keep = np.ones(max(rows - 1, 0), dtype=bool) if terminate_on_end else ~final_timestep
    index = np.flatnonzero(keep)
    observations = np.asarray(dataset["observations"])
    return {
        "observations": observations[index].astype(np.float32),
        "actions": np.asarray(dataset["actions"])[index].astype(np.float32),
        "rewards": _squeeze_column(np.asarray(dataset["rewards"]))[index].astype(np.float32),
        "next_observations": observations[index + 1].astype(np.float32),
        "terminals": terminals[index].astype(np.float32),
    }


def _final_steps_by_count(
    terminals: np.ndarray, rows: int, max_episode_steps: int, terminate_on_end: bool
) -> np.ndarray:
    """D4RL's fallback for files without timeouts: a step counter reset at terminals and at time limits."""
    final = np.zeros(max(rows - 1, 0), dtype=bool)
    episode_step = 0
    for i in range(rows - 1):
        final[i] = episode_step == max_episode_steps - 1
        if final[i] and not terminate_on_end:
            episode_step = 0
            continue
        if terminals[i] or final[i]:
            episode_step = 0
        episode_step += 1
    return final


def check_qlearning_dataset(dataset: Mapping[str, np.ndarray], source: str) -> None:
    """Raise :class:`DatasetError` naming the key unless ``dataset`` has the qlearning layout."""
    for key in QLEARNING_KEYS:
        if key not in dataset:
            raise DatasetError(f"{source}: missing key {key!r} (need {', '.join(QLEARNING_KEYS)})")
    rows = len(dataset["observations"])
    if rows == 0:
        raise DatasetError(f"{source}: the dataset has no transitions")
    for key in QLEARNING_KEYS:
        if len(dataset[key]) != rows:
            raise DatasetError(f"{source}: key {key!r} has {len(dataset[key])} rows, 'observations' has {rows}")


def candidate_paths(
    env: str, quality: str, dataset_dirs: Iterable[Path], allow_generated: bool
) -> list[tuple[Path, bool]]:
    """Where a dataset may lie, in order of preference: D4RL's own file first, then generated ones.

    Returns ``(path, generated)`` pairs. Among generated files the full one is preferred to budget-labelled
    ones, and a larger budget to a smaller one.
    """
    candidates: list[tuple[Path, bool]] = []
    for directory in dataset_dirs:
        candidates.append((directory / d4rl_file_name(env, quality), False))
    if allow_generated:
        for directory in dataset_dirs:
            candidates.append((directory / generated_file_name(env, quality), True))
            stem = generated_file_name(env, quality, budget=0).removesuffix("0.hdf5")
            budgeted = []
            for path in directory.glob(f"{stem}*.hdf5") if directory.is_dir() else []:
                match = re.fullmatch(r".*-budget(\d+)", path.stem)
                if match:
                    budgeted.append((int(match.group(1)), path))
            candidates.extend((path, True) for _, path in sorted(budgeted, reverse=True))
    return candidates


def find_dataset(
    env: str, quality: str, dataset_dirs: Iterable[Path], allow_generated: bool = True
) -> tuple[Path, bool]:
    """The first existing candidate of :func:`candidate_paths`, or an error listing every path searched."""
    dataset_dirs = list(dataset_dirs)
    candidates = candidate_paths(env, quality, dataset_dirs, allow_generated)
    for path, generated in candidates:
        if path.is_file():
            return path, generated
    searched = "\n  ".join(str(path) for path, _ in candidates)
    raise DatasetError(
        f"no {env}-{quality} dataset found. Searched:\n  {searched}\n"
        f"Place D4RL's {d4rl_file_name(env, quality)} in {dataset_dirs[0]} (or set D4RL_DATASET_DIR), "
        f"generate one with `harness data d4rl generate --env {env} --quality {quality} --out "
        f"{dataset_dirs[0] / generated_file_name(env, quality)}`, or set the environment parameter "
        "generate_if_missing = true for a tiny generated dataset."
    )


def minari_root() -> Path:
    """Minari's local dataset root: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", os.path.expanduser("~/.minari/datasets")))


def load_minari(dataset_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A local Minari dataset in the qlearning layout, and its metadata (reference scores, env spec, path).

    Minari stores each episode's final observation, so every transition has its true next observation and
    none is dropped: a truncated episode's last transition is kept with ``terminal = 0``.
    """
    try:
        import minari
    except ImportError:
        raise DatasetError("loading a Minari dataset needs the minari package: pip install minari") from None
    path = minari_root() / dataset_id
    if not (path / "data").is_dir():
        local = sorted(minari.list_local_datasets())
        raise DatasetError(
            f"Minari dataset {dataset_id!r} not found at {path} (MINARI_DATASETS_PATH or ~/.minari/datasets). "
            f"Local datasets: {', '.join(local) or 'none'}. Generate one with "
            "`harness data d4rl generate --env ENV --quality Q --minari`."
        )
    dataset = minari.load_dataset(dataset_id)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in QLEARNING_KEYS}
    for episode in dataset.iterate_episodes():
        observations = np.asarray(episode.observations)
        if not isinstance(episode.observations, np.ndarray) or observations.ndim != 2:
            raise DatasetError(f"Minari dataset {dataset_id!r}: only flat Box observations are supported")
        parts["observations"].append(observations[:-1])
        parts["next_observations"].append(observations[1:])
        parts["actions"].append(np.asarray(episode.actions))
        parts["rewards"].append(np.asarray(episode.rewards))
        parts["terminals"].append(np.asarray(episode.terminations))
    transitions = {key: np.concatenate(value).astype(np.float32) for key, value in parts.items()}
    check_finite(transitions, f"Minari dataset {dataset_id!r} ({path})")
    metadata = dict(dataset.storage.metadata)
    metadata["path"] = str(path)
    metadata["env_spec_object"] = dataset.spec.env_spec
    return transitions, metadata
