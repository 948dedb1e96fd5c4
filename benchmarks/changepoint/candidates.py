"""The change-point detectors a practitioner would consider, each as ``detect(values) -> [start of new segment]``.

Every candidate sees the series as given (oldest first) and returns the positions where a new segment begins,
the convention of :attr:`harness.analysis.stats.ChangePoints.indices` and of TCPD's annotations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ruptures
from scipy import special

from harness.analysis.stats import detect_change_points

Detector = Callable[[np.ndarray], list[int]]


def main_before_issue_24(values: np.ndarray) -> list[int]:
    """The detector on main before this change: PELT (l2), sigma = MAD(diff) / (0.6745 sqrt 2), 3x BIC, min 3."""
    if values.size < 6:
        return []
    differences = np.diff(values)
    sigma = float(np.median(np.abs(differences - np.median(differences)))) / (0.6745 * math.sqrt(2))
    if sigma == 0:
        sigma = float(np.std(differences)) / math.sqrt(2) or 1e-9 * max(1.0, float(np.abs(values).max()))
    penalty = 3.0 * 2 * sigma**2 * math.log(values.size)
    ends = ruptures.KernelCPD(kernel="linear", min_size=3).fit(values.reshape(-1, 1)).predict(pen=penalty)
    return [int(e) for e in ends[:-1]]


def ruptures_whole_series(search: str, penalty_scale: float = 3.0, min_size: int = 3) -> Detector:
    """PELT or binary segmentation (ruptures, l2 cost) with a BIC-type penalty from the whole series' spread."""

    def detect(values: np.ndarray) -> list[int]:
        if values.size < 2 * min_size:
            return []
        sigma = float(np.std(values, ddof=1)) or 1.0
        penalty = penalty_scale * 2 * sigma**2 * math.log(values.size)
        if search == "pelt":
            algorithm = ruptures.KernelCPD(kernel="linear", min_size=min_size)
        else:
            algorithm = ruptures.Binseg(model="l2", min_size=min_size, jump=1)
        ends = algorithm.fit(values.reshape(-1, 1)).predict(pen=penalty)
        return [int(e) for e in ends[:-1]]

    return detect


def e_divisive(pvalue: float, permutations: int = 100) -> Detector:
    """E-divisive with a permutation test (Matteson & James, 2014) as MongoDB and Apache Otava run it, from
    MongoDB's ``signal-processing-algorithms`` package; a fixed seed makes the permutations reproducible."""
    from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive as run

    def detect(values: np.ndarray) -> list[int]:
        state = np.random.get_state()
        np.random.seed(0)
        try:
            found = run(values, pvalue=pvalue, permutations=permutations)
        finally:
            np.random.set_state(state)
        return sorted(int(i) for i in found)

    return detect


def bocpd(hazard_lambda: float = 100.0) -> Detector:
    """Bayesian online change point detection (Adams & MacKay, 2007) with a Normal-Gamma prior, as TCPDBench's
    default (lambda 100, a = b = k = 1 on the standardised series, mean prior 0); the change points are the
    starts of the segments of the final maximum-a-posteriori run lengths, traced back from the end."""

    def detect(values: np.ndarray) -> list[int]:
        n = values.size
        if n < 3:
            return []
        x = (values - values.mean()) / (values.std() or 1.0)
        log_hazard, log_survive = math.log(1 / hazard_lambda), math.log(1 - 1 / hazard_lambda)
        mu0, kappa0, alpha0, beta0 = 0.0, 1.0, 1.0, 1.0
        log_r = np.array([0.0])
        mu, kappa, alpha, beta = np.array([mu0]), np.array([kappa0]), np.array([alpha0]), np.array([beta0])
        best_run = np.zeros(n, dtype=int)
        for t in range(n):
            scale = np.sqrt(beta * (kappa + 1) / (alpha * kappa))
            z = (x[t] - mu) / scale
            nu = 2 * alpha
            log_pred = (
                special.gammaln((nu + 1) / 2)
                - special.gammaln(nu / 2)
                - 0.5 * np.log(nu * math.pi)
                - np.log(scale)
                - (nu + 1) / 2 * np.log1p(z * z / nu)
            )
            growth = log_r + log_pred + log_survive
            change = special.logsumexp(log_r + log_pred + log_hazard)
            log_r = np.concatenate([[change], growth])
            log_r -= special.logsumexp(log_r)
            best_run[t] = int(np.argmax(log_r))
            mu_new = (kappa * mu + x[t]) / (kappa + 1)
            beta = np.concatenate([[beta0], beta + kappa * (x[t] - mu) ** 2 / (2 * (kappa + 1))])
            mu = np.concatenate([[mu0], mu_new])
            kappa = np.concatenate([[kappa0], kappa + 1])
            alpha = np.concatenate([[alpha0], alpha + 0.5])
        # best_run[t] = r means the segment holding t started at t - r + 1 (r counts x[t] itself).
        starts, t = [], n - 1
        while t > 0:
            start = t - max(int(best_run[t]), 1) + 1
            if start <= 0:
                break
            starts.append(start)
            t = start - 1
        return sorted(set(starts))

    return detect


def harness_detector(**options: object) -> Detector:
    """:func:`harness.analysis.stats.detect_change_points` with ``options`` (none: the defaults)."""

    def detect(values: np.ndarray) -> list[int]:
        return detect_change_points(values, **options).indices  # type: ignore[arg-type]

    return detect


def zero(values: np.ndarray) -> list[int]:
    """No change point ever (TCPDBench's ``zero`` method)."""
    return []


CANDIDATES: dict[str, Detector] = {
    "main before issue 24 (PELT, MAD of diff)": main_before_issue_24,
    "PELT, whole-series sigma, 3x BIC": ruptures_whole_series("pelt"),
    "BinSeg, whole-series sigma, 3x BIC": ruptures_whole_series("binseg"),
    "E-divisive, p 0.05": e_divisive(0.05),
    "E-divisive, p 0.001": e_divisive(0.001),
    "BOCPD (lambda 100)": bocpd(),
    "zero (no change)": zero,
    "harness, whole-series noise only (no screen), 3.4x BIC": harness_detector(
        screen_scale=math.inf, max_shrink=1.0, penalty_scale=3.4
    ),
    "harness, screen without floor, 5x BIC": harness_detector(max_shrink=math.inf),
    "harness default without outlier removal": harness_detector(remove_outliers=False),
    "harness default with PELT as the final pass": harness_detector(search="pelt"),
    "harness default": harness_detector(),
}
