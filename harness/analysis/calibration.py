"""Noise-calibrated thresholds: how much a metric moves when nothing changed, on this machine.

``harness calibrate SUITE`` runs the suite's profile several times and measures, per metric and case, the
run-to-run relative spread (coefficient of variation) of each cell's value with its seed held fixed. From it:

* a threshold per metric and case (algorithm, environment): max(the configured threshold,
  ``NOISE_MULTIPLIER`` x that case's spread): a change smaller than three run-to-run standard deviations is
  this machine's noise, not a regression. Per case, so one noisy case raises its own threshold, not its
  metric's in every case. A threshold above :data:`MAX_SANE_THRESHOLD` would turn regression detection off,
  so it is not stored: the case is marked too noisy, keeps its configured threshold, and ``repeats_needed``
  says how many repeats a side would detect a change of the configured size through the noise;
* ``repeats_needed`` = runs a side to detect a change of ``effect`` (default: the configured threshold) at
  ``alpha`` with 80% power;
* the spreads themselves, which ``compare`` uses for a z-test when a side has too few runs for a permutation
  test.

The result is stored in ``<results>/calibration/<suite>-<profile>.json`` and as an MLflow run tagged
``harness.kind=calibration`` in the suite's experiment. A calibration is tied to the machine fingerprint it was
measured on; ``compare`` ignores one from another machine.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.stats import relative_spread, repeats_needed
from harness.errors import BadInput
from harness.record import SuiteRun, metric_union

NOISE_MULTIPLIER = 3.0
#: A calibrated threshold above this relative change would hide every realistic regression.
MAX_SANE_THRESHOLD = 0.5
#: Version 2: thresholds per (metric, case); version 1 files (per metric) are read by deriving them.
CALIBRATION_VERSION = 2


@dataclass
class MetricCalibration:
    """Measured noise of one metric and what follows from it."""

    cv: float
    threshold: float
    configured_threshold: float
    effect: float
    repeats_needed: int
    #: Run-to-run spread per case ("algorithm/environment").
    cases: dict[str, float] = field(default_factory=dict)
    #: The noise would have raised every case's threshold above MAX_SANE_THRESHOLD: none was stored.
    too_noisy: bool = False
    #: Threshold per case; a too-noisy case has none (it keeps the configured threshold).
    case_thresholds: dict[str, float] = field(default_factory=dict)
    #: Cases whose noise would have raised their threshold above MAX_SANE_THRESHOLD.
    too_noisy_cases: list[str] = field(default_factory=list)

    def case_advice(self, case: str) -> str:
        """What to do about a too-noisy case ("" when it is not one)."""
        if case not in self.too_noisy_cases:
            return ""
        cv = self.cases[case]
        return (
            f"{case}: run-to-run spread {cv:.0%} would need a threshold of {NOISE_MULTIPLIER * cv:.0%} "
            f"(> {MAX_SANE_THRESHOLD:.0%}), which would switch regression detection off; kept "
            f"{self.configured_threshold:.1%} for this case and stored no threshold. Compare with at least "
            f"{repeats_needed(cv, self.effect)} repeats a side (seeds or runs), or make the measurement quieter"
        )

    @property
    def advice(self) -> str:
        return "; ".join(self.case_advice(case) for case in self.too_noisy_cases)


@dataclass
class Calibration:
    """Per-metric and per-case noise of one suite and profile on one machine."""

    suite: str
    profile: str
    fingerprint: str
    runs: list[str]
    alpha: float
    metrics: dict[str, MetricCalibration]
    created: float = field(default_factory=time.time)
    source: str = ""
    version: int = CALIBRATION_VERSION

    def threshold(self, metric: str, algorithm: str, environment: str) -> float | None:
        """The calibrated threshold of ``metric`` in this case; None when the case was not measured or is too
        noisy for one (the configured threshold applies)."""
        entry = self.metrics.get(metric)
        if entry is None:
            return None
        value = entry.case_thresholds.get(case_key(algorithm, environment))
        if value is None or math.isnan(value):
            return None
        return min(value, MAX_SANE_THRESHOLD)

    @property
    def too_noisy(self) -> list[str]:
        """Metrics with a case whose noise was too large for a threshold (see :attr:`MetricCalibration.advice`)."""
        return [name for name, entry in self.metrics.items() if entry.too_noisy_cases]

    def noise(self, metric: str, algorithm: str, environment: str) -> float | None:
        """The case's measured spread, else the metric's pooled spread, else None."""
        entry = self.metrics.get(metric)
        if entry is None:
            return None
        value = entry.cases.get(case_key(algorithm, environment), entry.cv)
        return None if value is None or math.isnan(value) else value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("source")
        return _nan_to_none(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "") -> Calibration:
        version = data.get("version")
        if version not in (1, CALIBRATION_VERSION):
            raise BadInput(
                f"{source}: calibration version {version!r}, this harness reads 1 and {CALIBRATION_VERSION}; "
                "rerun `harness calibrate`"
            )
        metrics = {}
        for name, entry in data["metrics"].items():
            metric = MetricCalibration(**{k: (math.nan if v is None else v) for k, v in entry.items()})  # type: ignore[arg-type]
            if version == 1:  # per-metric thresholds: derive the per-case ones from the stored spreads
                metric.case_thresholds, metric.too_noisy_cases = _case_thresholds(
                    metric.cases, metric.configured_threshold
                )
            metrics[name] = metric
        values = {k: v for k, v in data.items() if k not in ("metrics", "version")}
        return cls(**values, metrics=metrics, source=source)

    def save(self, results_dir: Path) -> Path:
        path = calibration_path(results_dir, self.suite, self.profile)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        self.source = str(path)
        return path


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def case_key(algorithm: str, environment: str) -> str:
    return f"{algorithm}/{environment}"


def calibration_path(
    results_dir: Path, suite: str, profile: str, source: str = "calibration (suite and profile of the runs it measured)"
) -> Path:
    from harness.paths import path_for

    return path_for(results_dir / "calibration", "{suite}-{profile}.json", source, suite=suite, profile=profile)


def load_calibration(
    results_dir: Path,
    suite: str,
    profile: str,
    fingerprint: str,
    source: str = "calibration (suite and profile of the compared run)",
) -> Calibration | None:
    """The stored calibration for this suite, profile and machine, or None (``source``: where the suite and
    profile names came from, named if one is refused)."""
    path = calibration_path(results_dir, suite, profile, source)
    if not path.exists():
        return None
    try:
        calibration = Calibration.from_dict(json.loads(path.read_text()), source=str(path))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: unreadable calibration ({exc}); rerun `harness calibrate {suite}`") from None
    if fingerprint and calibration.fingerprint and calibration.fingerprint != fingerprint:
        return None
    return calibration


def calibrate_from_runs(
    runs: Sequence[SuiteRun],
    *,
    effect: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Calibration:
    """Measure each metric's run-to-run spread over repeated runs of the same suite and profile."""
    if len(runs) < 2:
        raise BadInput(f"calibration needs at least 2 runs of the suite, got {len(runs)}")
    first = runs[0]
    if any(run.suite != first.suite or run.profile != first.profile for run in runs):
        raise BadInput("calibration runs must all be of the same suite and profile")
    metrics: dict[str, MetricCalibration] = {}
    for metric in metric_union(runs):
        # (algorithm, environment, seed) -> value in each run: the seed is held fixed, only the run varies.
        per_cell: dict[tuple[str, str, int | None], list[float]] = {}
        for run in runs:
            for cell in run.ok_cells:
                if metric in cell.metrics:
                    per_cell.setdefault((cell.algorithm, cell.environment, cell.seed), []).append(cell.metrics[metric])
        per_case: dict[str, list[float]] = {}
        for (algorithm, environment, _seed), values in per_cell.items():
            spread = relative_spread(values)
            if not math.isnan(spread):
                per_case.setdefault(case_key(algorithm, environment), []).append(spread)
        if not per_case:
            continue
        cases = {key: _root_mean_square(values) for key, values in per_case.items()}
        cv = _root_mean_square(list(cases.values()))
        configured = first.info(metric).threshold
        target = effect if effect is not None else configured
        case_thresholds, too_noisy_cases = _case_thresholds(cases, configured)
        raised = max(configured, NOISE_MULTIPLIER * cv)
        metrics[metric] = MetricCalibration(
            cv=cv,
            threshold=min(raised, MAX_SANE_THRESHOLD) if case_thresholds else configured,
            configured_threshold=configured,
            effect=target,
            repeats_needed=repeats_needed(max(cases.values()), target, alpha, power),
            cases=cases,
            too_noisy=not case_thresholds,
            case_thresholds=case_thresholds,
            too_noisy_cases=too_noisy_cases,
        )
    return Calibration(
        suite=first.suite,
        profile=first.profile,
        fingerprint=first.fingerprint,
        runs=[run.run_id for run in runs],
        alpha=alpha,
        metrics=metrics,
    )


def _case_thresholds(cases: Mapping[str, float], configured: float) -> tuple[dict[str, float], list[str]]:
    """Per case: max(configured, NOISE_MULTIPLIER x spread); cases that would exceed MAX_SANE_THRESHOLD get none."""
    thresholds: dict[str, float] = {}
    too_noisy: list[str] = []
    for case, cv in sorted(cases.items()):
        if math.isnan(cv):
            continue
        raised = max(configured, NOISE_MULTIPLIER * cv)
        if raised > MAX_SANE_THRESHOLD:
            too_noisy.append(case)
        else:
            thresholds[case] = raised
    return thresholds, too_noisy


def _root_mean_square(values: Sequence[float]) -> float:
    return float(math.sqrt(np.mean(np.square(values))))
