"""Report figures, drawn with matplotlib's Agg backend and embedded as base64 PNG data URIs.

Every function returns a ``data:image/png;base64,...`` string, so the HTML page needs no other file and no
network. Labels come from runs and plugins; matplotlib draws them as text (``usetex`` off, mathtext
disabled by escaping ``$``), so a label cannot inject anything.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.analysis.stats import ChangePoints, Estimate, PerformanceProfile

MAX_PANELS = 12


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _text(label: str) -> str:
    # "$" would switch matplotlib to mathtext; labels are plain text.
    return str(label).replace("$", r"\$")


def _encode(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def aggregate_intervals(metric: str, unit: str, estimates: Mapping[str, Mapping[str, Estimate]]) -> str:
    """One panel per aggregate (IQM, mean, median): each algorithm's point estimate and 95% interval."""
    plt = _pyplot()
    algorithms = list(estimates)
    aggregates = ["iqm", "mean", "median"]
    figure, axes = plt.subplots(1, 3, figsize=(10, 0.5 + 0.45 * max(2, len(algorithms))), sharey=True)
    colours = plt.get_cmap("tab10")
    for axis, aggregate in zip(axes, aggregates, strict=True):
        for row, algorithm in enumerate(algorithms):
            estimate = estimates[algorithm][aggregate]
            colour = colours(row % 10)
            if estimate.has_interval:
                axis.barh(row, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colour, alpha=0.4)
            axis.plot([estimate.value], [row], "|", color=colour, markersize=18, markeredgewidth=2)
        axis.set_title(aggregate.upper() if aggregate == "iqm" else aggregate.capitalize())
        axis.set_xlabel(_text(f"{metric} ({unit})" if unit else metric))
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(algorithms)), [_text(a) for a in algorithms])
    axes[0].invert_yaxis()
    figure.suptitle(_text(f"{metric}: aggregate with 95% stratified bootstrap intervals"), y=1.06)
    return _encode(figure)


def performance_profiles(metric: str, unit: str, profiles: Mapping[str, PerformanceProfile], higher: bool) -> str:
    """Fraction of runs better than each threshold, per algorithm, with bootstrap bands."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for algorithm, profile in profiles.items():
        (line,) = axis.plot(profile.thresholds, profile.fraction, label=_text(algorithm))
        if not np.isnan(profile.low).all():
            axis.fill_between(profile.thresholds, profile.low, profile.high, color=line.get_color(), alpha=0.2)
    axis.set_xlabel(_text(f"{metric} threshold τ" + (f" ({unit})" if unit else "")))
    axis.set_ylabel("fraction of runs " + ("> τ" if higher else "< τ"))
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(_text(f"Performance profile of {metric}"))
    return _encode(figure)


def score_curves(name: str, curves: Mapping[str, Mapping[str, Sequence[Sequence[tuple[int, float]]]]]) -> str:
    """Curves over training: environment -> algorithm -> one curve per seed; mean line and min-max band."""
    plt = _pyplot()
    environments = list(curves)[:MAX_PANELS]
    columns = min(3, len(environments))
    rows = (len(environments) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, environment in zip(axes.flat, environments, strict=False):
        for algorithm, seeds in curves[environment].items():
            by_step: dict[int, list[float]] = {}
            for seed_curve in seeds:
                for step, value in seed_curve:
                    by_step.setdefault(step, []).append(value)
            steps = sorted(by_step)
            values = [np.asarray(by_step[s]) for s in steps]
            mean = np.array([v.mean() for v in values])
            (line,) = axis.plot(steps, mean, label=_text(algorithm))
            if any(v.size > 1 for v in values):
                axis.fill_between(
                    steps, [v.min() for v in values], [v.max() for v in values], color=line.get_color(), alpha=0.2
                )
        axis.set_title(_text(environment), fontsize="medium")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(environments) :]:
        axis.axis("off")
    axes.flat[0].set_ylabel(_text(name))
    axes.flat[0].legend(fontsize="small")
    figure.suptitle(_text(f"{name} over training (mean over seeds, band: min to max)"))
    figure.tight_layout()
    return _encode(figure)


def roofline(
    metric: str,
    values: Mapping[str, Mapping[str, float]],
    ceilings: Mapping[str, float],
    ceiling_metric: str,
) -> str:
    """Throughput per environment and algorithm against the measured bandwidth ceiling of each environment."""
    plt = _pyplot()
    environments = sorted({env for per_env in values.values() for env in per_env})
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(environments) + 3), 4))
    positions = np.arange(len(environments))
    width = 0.8 / max(1, len(values))
    for index, (algorithm, per_env) in enumerate(values.items()):
        heights = [per_env.get(env, np.nan) for env in environments]
        axis.bar(positions + index * width - 0.4 + width / 2, heights, width, label=_text(algorithm))
    if ceilings:
        for position, env in zip(positions, environments, strict=True):
            if env in ceilings:
                axis.hlines(ceilings[env], position - 0.45, position + 0.45, colors="black", linestyles="--")
        axis.plot([], [], "k--", label=_text(f"roofline ({ceiling_metric})"))
    axis.set_xticks(positions, [_text(env) for env in environments], rotation=30, ha="right")
    axis.set_ylabel(_text(f"{metric} (GB/s)"))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(_text(f"{metric} against the bandwidth roofline"))
    return _encode(figure)


def trend(
    metric: str,
    unit: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    change_points: Mapping[str, ChangePoints],
) -> str:
    """A metric's value across nightly runs (oldest left), one line per case, change points marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(labels))
    for case, values in list(series.items())[:10]:
        (line,) = axis.plot(x, values, marker="o", markersize=3, label=_text(case))
        found = change_points.get(case)
        if found is None:
            continue
        for index in found.indices:
            axis.axvline(index - 0.5, color=line.get_color(), linestyle=":", alpha=0.8)
        for segment in found.segments:
            axis.hlines(segment.mean, segment.start, segment.end - 1, colors=line.get_color(), alpha=0.5)
    axis.set_xticks(x, [_text(label) for label in labels], rotation=45, ha="right", fontsize="x-small")
    axis.set_ylabel(_text(f"{metric} ({unit})" if unit else metric))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
    axis.set_title(_text(f"{metric} across runs (dotted: change points, flat lines: segment means)"))
    return _encode(figure)
