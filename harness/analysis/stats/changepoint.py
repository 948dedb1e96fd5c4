"""Change points in a metric's history across nightly runs.

A single night compares against the baseline with a threshold, so a slow drift of 1% a night is never
flagged by any one night. Segmenting the whole history finds it. :func:`detect_change_points` does, in order:

1. **Outliers out.** A night more than 4 sigmas from the median of the 5 nights around it is set to that
   median (sigma: the larger of the local noise, the MAD of the residuals around that rolling median, and the
   whole series' middle-90% spread). A spike of one or two nights never moves the median of five, so it is
   removed whole and can never start a segment (before, each spike was reported twice, up then down). A second
   mode that a fifth or more of the nights fall in is within the spread and stays: it is noise. The positions
   replaced are listed in ``outliers``; segment means and intervals are over the cleaned series.
2. **Noise from the whole series.** Night-to-night differences are tiny on a smooth or trending series, and a
   penalty built from them cut such series into dozens of segments. Instead a permissive first pass (PELT with
   ``2 x`` the BIC penalty built from the whole series' standard deviation) finds the big steps, and the noise
   is the standard deviation within its segments, but never below the whole series' standard deviation / 1.5,
   so a trend is not cut ever finer.
3. **Binary segmentation** (ruptures, least-squares cost) with the penalty ``5 x 2 sigma^2 log(n)``,
   segments at least 3 long; then adjacent segments whose means do not differ at 0.01 (Welch's t-test) are
   merged, weakest first (a safeguard: it changed none of the measurements below). ``search="pelt"`` runs PELT
   (Killick et al., 2012) instead: exact and faster, the same on the simulated histories, a little worse on
   TCPD's F1.
4. **Sizes with intervals.** Each change point gets a :class:`LevelChange`: the adjacent segments' means, the
   relative change and Fieller's 95% interval for it (both means' uncertainty, Welch's degrees of freedom).

Measured by ``benchmarks/changepoint/run.py`` (benchmarks/RESULTS.md, "Change-point detection"; 2-core Xeon VM,
2026-12-06), on simulated histories of 100 nights, 500 each: no change point in 100% of histories of pure
noise (Gaussian 3%; Student t with 3 degrees of freedom, scale 3%; a timing flipping at random between two modes
10% apart, on half or on a fifth of the nights; Gaussian with three one-night spikes of +30% to +200%), and a
spike reported as a change in none; a 10% step under 3% noise found within 3 nights in 100%, a 5% step within
10 nights in 85%; the 95% interval holds the true step in 95% (10%) and 96% (5%) of the steps found. On the 31
univariate series of TCPD in its repository, with TCPDBench's protocol (F1 with a margin of 5, covering, every
annotator): F1 0.734 and covering 0.696 (the old detector: 0.598 and 0.476; no change at all: 0.663 and 0.568);
on the 30 series where TCPDBench's published default runs have scores, F1 0.740 and covering 0.707, above every
published method's default (the best: binary segmentation's F1 0.738, amoc's covering 0.697; margins within
the benchmark's noise, see RESULTS). One call on 365 nights takes about 7 to 13 ms.

Limits: a step needs about 7 nights on each side (a series of fewer than 14 nights shows none); a new level in
the last one or two nights shows only once a third night confirms it (segments are at least 3 long, and a
large jump there may be taken for outliers until then); a steady drift comes out as one or a few steps (the
segments' means say how far it went); a 5% step under 3% noise is missed in about one history in seven.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Defaults, chosen by benchmarks/changepoint (see benchmarks/RESULTS.md, "Change-point detection").
DEFAULT_MIN_SIZE = 3
DEFAULT_PENALTY_SCALE = 5.0
DEFAULT_ALPHA = 0.01
DEFAULT_SCREEN_SCALE = 2.0
DEFAULT_MAX_SHRINK = 1.5
DEFAULT_SEARCH = "binseg"
# A night is an outlier when it is this many noise sigmas from the median of the 5 nights around it.
OUTLIER_SIGMAS = 4.0
_OUTLIER_WINDOW = 5
# 1 / Phi^-1(3/4): a normal sample's MAD times this is its standard deviation.
_MAD_TO_SIGMA = 1.482602218505602


class ChangePointUnavailable(RuntimeError):
    """``ruptures`` is not installed; the message says how to get it."""


@dataclass(frozen=True)
class Segment:
    """A stretch of runs ``[start, end)`` with a steady mean."""

    start: int
    end: int
    mean: float


@dataclass(frozen=True)
class LevelChange:
    """How far the level moved at one change point, with a 95% interval.

    Attributes:
        index: the position where the new segment begins (one of :attr:`ChangePoints.indices`).
        before: the mean of the segment that ends at ``index``.
        after: the mean of the segment that begins at ``index``.
        relative: ``(after - before) / |before|`` (NaN when ``before`` is 0).
        low: the lower end of the 95% interval of ``relative`` (Fieller's interval for a ratio of two
            independent means with Welch's degrees of freedom; ``-inf`` when ``before`` is not distinguishable
            from 0).
        high: the upper end of that interval (``inf`` likewise).
    """

    index: int
    before: float
    after: float
    relative: float
    low: float
    high: float


@dataclass(frozen=True)
class ChangePoints:
    """Where a series changes level.

    Attributes:
        indices: positions (into the series) where a new segment begins.
        segments: the steady stretches between change points, in order.
        noise: the noise estimate (sigma) the penalty was built from.
        penalty: the PELT penalty that was used (recorded so the result can be reproduced).
        changes: one :class:`LevelChange` per index: the size of the step with its 95% interval.
        outliers: single-night outliers (positions) that were set to their neighbours' median before
            segmenting; they never start a segment and do not count in the means.
    """

    indices: list[int] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    noise: float = math.nan
    penalty: float = math.nan
    changes: list[LevelChange] = field(default_factory=list)
    outliers: list[int] = field(default_factory=list)

    @property
    def total_relative_shift(self) -> float:
        """Relative change from the first segment's mean to the last's (0 without change points)."""
        if len(self.segments) < 2 or self.segments[0].mean == 0:
            return 0.0
        return (self.segments[-1].mean - self.segments[0].mean) / abs(self.segments[0].mean)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_relative_shift"] = self.total_relative_shift
        return data


def _rolling_median(values: np.ndarray, window: int = _OUTLIER_WINDOW) -> np.ndarray:
    """The median of the ``window`` values centred on each point; the points nearer an end than half a window
    take the median of the first (last) ``window`` values, so two spikes at the end never make the median."""
    half = window // 2
    if values.size < window:
        return np.full_like(values, float(np.median(values)))
    median = np.empty_like(values)
    median[half:-half] = np.median(sliding_window_view(values, window), axis=1)
    median[:half] = median[half]
    median[-half:] = median[-half - 1]
    return median


def robust_noise(values: np.ndarray) -> float:
    """Night-to-night noise sigma: the MAD of the residuals around a 5-night rolling median.

    Insensitive to level shifts and single outliers, but, like every local estimate, small on smooth series:
    :func:`detect_change_points` uses it only to find outliers, never alone for its penalty.
    """
    if values.size < 3:
        return math.nan
    residuals = values - _rolling_median(values)
    # The rolling median shares the point itself, which shrinks the residuals for normal noise (measured on
    # 10^5 normal values: 1.4826 MAD of the residuals / sigma = 0.727 for a 5-point window).
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(residuals))) / 0.727
    if sigma == 0:
        sigma = float(np.std(residuals)) or 1e-9 * max(1.0, float(np.abs(values).max()))
    return sigma


def spread_90(values: np.ndarray) -> float:
    """The whole series' spread as a sigma: the range of its middle 90% over that of a normal's (3.29 sigma).

    Unlike the MAD it counts a second mode that a fifth of the nights fall in, and unlike the standard
    deviation it ignores the few extreme nights that are outliers.
    """
    low, high = np.quantile(values, [0.05, 0.95])
    return float(high - low) / 3.289707253902945


def remove_single_night_outliers(values: np.ndarray, sigmas: float = OUTLIER_SIGMAS) -> tuple[np.ndarray, list[int]]:
    """``values`` with each outlier night set to the median of the 5 nights around it.

    A night is an outlier when it is more than ``sigmas`` times the larger of the local noise
    (:func:`robust_noise`) and the whole series' spread (:func:`spread_90`) from that median. A spike of one or
    two nights never moves the median of five, so it is removed whole; a step moves the median with it, so it
    stays; a slow mode that a fifth of the nights fall in is within the spread, so it stays too (it is noise
    the penalty must know about). Returns the cleaned copy and the positions replaced.
    """
    if values.size < _OUTLIER_WINDOW:
        return values.copy(), []
    median = _rolling_median(values)
    sigma = max(robust_noise(values), spread_90(values))
    far = np.abs(values - median) > sigmas * sigma
    cleaned = np.where(far, median, values)
    return cleaned, [int(i) for i in np.flatnonzero(far)]


def pooled_noise(values: np.ndarray, ends: Sequence[int]) -> float:
    """Standard deviation of ``values`` around the means of the segments that end at ``ends``.

    With one segment this is the whole series' spread: a noise estimate that a smooth trend cannot make
    small, which is what keeps a trend from being cut into dozens of steps.
    """
    starts = [0, *ends[:-1]]
    squares = sum(float(np.sum((values[s:e] - values[s:e].mean()) ** 2)) for s, e in zip(starts, ends, strict=True))
    dof = values.size - len(ends)
    if dof <= 0:
        return math.nan
    sigma = math.sqrt(squares / dof)
    return sigma or 1e-9 * max(1.0, float(np.abs(values).max()))


def _pelt(values: np.ndarray, penalty: float, min_size: int) -> list[int]:
    import ruptures

    algorithm = ruptures.KernelCPD(kernel="linear", min_size=min_size, jump=1).fit(values.reshape(-1, 1))
    return [int(e) for e in algorithm.predict(pen=penalty)]


def _binseg(values: np.ndarray, penalty: float, min_size: int) -> list[int]:
    import ruptures

    algorithm = ruptures.Binseg(model="l2", min_size=min_size, jump=1).fit(values.reshape(-1, 1))
    return [int(e) for e in algorithm.predict(pen=penalty)]


#: The final search of :func:`detect_change_points`, by name.
SEARCHES = {"binseg": _binseg, "pelt": _pelt}


def _welch(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Welch's two-sided p-value for a difference in means, and its degrees of freedom."""
    from scipy import stats

    va, vb = float(np.var(after, ddof=1)) / after.size, float(np.var(before, ddof=1)) / before.size
    difference = float(after.mean() - before.mean())
    if va + vb == 0:
        return (0.0 if difference else 1.0), float(after.size + before.size - 2)
    dof = (va + vb) ** 2 / (va**2 / (after.size - 1) + vb**2 / (before.size - 1))
    t = difference / math.sqrt(va + vb)
    return float(2 * stats.t.sf(abs(t), dof)), dof


def _prune(values: np.ndarray, ends: list[int], alpha: float) -> list[int]:
    """Merge, weakest first, the change points whose adjacent segments' means do not differ at ``alpha``."""
    ends = list(ends)
    while len(ends) > 1:
        starts = [0, *ends[:-1]]
        p_values = [_welch(values[starts[i] : ends[i]], values[ends[i] : ends[i + 1]])[0] for i in range(len(ends) - 1)]
        weakest = int(np.argmax(p_values))
        if p_values[weakest] <= alpha:
            break
        del ends[weakest]
    return ends


def level_change(before: np.ndarray, after: np.ndarray, index: int, confidence: float = 0.95) -> LevelChange:
    """The relative change from ``before``'s mean to ``after``'s, with Fieller's interval for it.

    ``relative = after_mean / before_mean - 1`` (sign-corrected for a negative ``before``); the interval is
    the set of ratios ``rho`` with ``(a - rho b)^2 <= t^2 (var_a + rho^2 var_b)`` (Fieller, 1954), ``t`` from
    Student's t with Welch's degrees of freedom, so the uncertainty of both means counts.
    """
    from scipy import stats

    a, b = float(after.mean()), float(before.mean())
    if b == 0:
        return LevelChange(index, b, a, math.nan, math.nan, math.nan)
    relative = (a - b) / abs(b)
    if before.size < 2 or after.size < 2:
        return LevelChange(index, b, a, relative, -math.inf, math.inf)
    va, vb = float(np.var(after, ddof=1)) / after.size, float(np.var(before, ddof=1)) / before.size
    _, dof = _welch(before, after)
    t = float(stats.t.ppf(0.5 + confidence / 2, dof))
    # (b^2 - t^2 vb) rho^2 - 2 a b rho + (a^2 - t^2 va) <= 0
    qa, qb, qc = b * b - t * t * vb, -2 * a * b, a * a - t * t * va
    discriminant = qb * qb - 4 * qa * qc
    if qa <= 0 or discriminant < 0:
        return LevelChange(index, b, a, relative, -math.inf, math.inf)
    root = math.sqrt(discriminant)
    rho_low, rho_high = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
    sign = 1.0 if b > 0 else -1.0
    low, high = sorted((sign * (rho_low - 1), sign * (rho_high - 1)))
    return LevelChange(index, b, a, relative, low, high)


def _segment(
    values: np.ndarray,
    *,
    min_size: int,
    penalty_scale: float,
    alpha: float,
    screen_scale: float,
    max_shrink: float,
    search: str = "binseg",
) -> tuple[list[int], float, float]:
    """The segment ends, the noise and the penalty used (see the module's docstring)."""
    whole = pooled_noise(values, [values.size])
    log_n = math.log(values.size)
    # Stage 1, a permissive screen: the big steps, so that the noise of stage 2 is not their size.
    screened = _pelt(values, screen_scale * 2 * whole**2 * log_n, min_size)
    # Stage 2: the noise within the screened segments, but never below a fraction of the whole series' spread,
    # so a smooth trend (whose every segment is narrower than the whole) is not cut ever finer.
    sigma = max(pooled_noise(values, screened), whole / max_shrink)
    penalty = penalty_scale * 2 * sigma**2 * log_n
    ends = SEARCHES[search](values, penalty, min_size)
    if alpha < 1:
        ends = _prune(values, ends, alpha)
    return ends, sigma, penalty


def detect_change_points(
    series: Sequence[float],
    min_size: int = DEFAULT_MIN_SIZE,
    penalty_scale: float = DEFAULT_PENALTY_SCALE,
    *,
    alpha: float = DEFAULT_ALPHA,
    screen_scale: float = DEFAULT_SCREEN_SCALE,
    max_shrink: float = DEFAULT_MAX_SHRINK,
    remove_outliers: bool = True,
    search: str = DEFAULT_SEARCH,
) -> ChangePoints:
    """Change points of ``series`` (oldest first); see the module's docstring for the method and its numbers.

    ``min_size`` is the shortest segment; ``penalty_scale`` multiplies the BIC penalty ``2 sigma^2 log(n)``
    (larger finds fewer); ``alpha`` is the level at which adjacent segments' means must differ (Welch) for
    their change point to stay (1 keeps all); ``screen_scale`` is the penalty scale of the first, permissive
    pass whose segments the noise is measured within; ``max_shrink`` how far below the whole series' spread that
    noise may go; ``remove_outliers`` sets single-night outliers to their neighbours' median first (they are
    listed in :attr:`ChangePoints.outliers`); ``search`` is the final pass, ``"binseg"`` (binary segmentation)
    or ``"pelt"`` (exact, faster, a little worse on TCPD's F1). Non-finite values are left out and every position
    refers to the series as given. Segments are at least 2 long whatever ``min_size`` says (an interval needs two
    values); series with fewer than ``2 * min_size`` finite values have no change points.
    """
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    min_size = max(min_size, 2)
    raw = np.asarray(series, dtype=float)
    finite = np.flatnonzero(np.isfinite(raw))
    values = raw[finite]
    if values.size < 2 * min_size:
        mean = float(values.mean()) if values.size else math.nan
        return ChangePoints([], [Segment(0, int(raw.size), mean)] if raw.size else [])
    try:
        import ruptures  # noqa: F401
    except ImportError as exc:
        raise ChangePointUnavailable(
            "change-point detection needs the 'ruptures' package: pip install ruptures"
        ) from exc
    outliers: list[int] = []
    if remove_outliers:
        values, outliers = remove_single_night_outliers(values)
    ends, sigma, penalty = _segment(
        values,
        min_size=min_size,
        penalty_scale=penalty_scale,
        alpha=alpha,
        screen_scale=screen_scale,
        max_shrink=max_shrink,
        search=search,
    )
    starts = [0, *ends[:-1]]
    changes = [
        level_change(values[starts[i] : ends[i]], values[ends[i] : ends[i + 1]], ends[i]) for i in range(len(ends) - 1)
    ]
    # Back to positions in the series as given (non-finite values were left out).
    position = [*finite.tolist(), int(raw.size)]
    segments = [
        Segment(position[s] if s else 0, position[e], float(values[s:e].mean()))
        for s, e in zip(starts, ends, strict=True)
    ]
    changes = [LevelChange(position[c.index], c.before, c.after, c.relative, c.low, c.high) for c in changes]
    return ChangePoints(
        [position[e] for e in ends[:-1]],
        segments,
        sigma,
        penalty,
        changes,
        [position[i] for i in outliers],
    )


# --- Scoring against human annotations: TCPDBench's F1 and covering --------------------------------------
# A port of the logic of TCPDBench's analysis/scripts/metrics.py (van den Burg & Williams, "An Evaluation of
# Change Point Detection Algorithms", 2020; https://github.com/alan-turing-institute/TCPDBench), so our
# numbers compare with its published tables. Positions are 0-based; 0 counts as a change point in every set.


def _matched(truth: set[int], predicted: set[int], margin: int) -> set[int]:
    """The true change points that some prediction within ``margin`` claims, each prediction used once."""
    unused = set(predicted)
    hits: set[int] = set()
    for tau in truth:
        close = sorted((abs(tau - x), x) for x in unused if abs(tau - x) <= margin)
        if close:
            hits.add(tau)
            unused.remove(close[0][1])
    return hits


def annotation_f1(annotations: Mapping[str, Sequence[int]], predicted: Sequence[int], margin: int = 5) -> float:
    """TCPDBench's F1: precision against the union of all annotators, recall averaged over annotators."""
    per_annotator = [{0, *marks} for marks in annotations.values()]
    found = {0, *predicted}
    union = set().union(*per_annotator)
    precision = len(_matched(union, found, margin)) / len(found)
    recall = sum(len(_matched(marks, found, margin)) / len(marks) for marks in per_annotator) / len(per_annotator)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _partition(locations: Sequence[int], n_obs: int) -> list[tuple[int, int]]:
    """The segments ``[start, end)`` of ``range(n_obs)`` that ``locations`` cut it into."""
    cuts = sorted({x for x in locations if 0 < x < n_obs})
    bounds = [0, *cuts, n_obs]
    return list(itertools.pairwise(bounds))


def annotation_covering(annotations: Mapping[str, Sequence[int]], predicted: Sequence[int], n_obs: int) -> float:
    """TCPDBench's covering: how well the predicted segments cover each annotator's (Arbelaez et al., 2011,
    eq. 8), averaged over annotators."""
    mine = _partition(predicted, n_obs)
    scores = []
    for marks in annotations.values():
        total = 0.0
        for start, end in _partition(marks, n_obs):
            best = 0.0
            for other_start, other_end in mine:
                overlap = min(end, other_end) - max(start, other_start)
                if overlap > 0:
                    union = max(end, other_end) - min(start, other_start)
                    best = max(best, overlap / union)
            total += (end - start) * best
        scores.append(total / n_obs)
    return sum(scores) / len(scores)
