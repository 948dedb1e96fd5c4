"""Report figures, drawn with matplotlib and embedded in the page as inline SVG (vector, sharp at any zoom).

Every function returns SVG markup (``<svg ...>...</svg>``), so the HTML page needs no other file and no
network. Labels come from runs and plugins; matplotlib draws text as glyph paths (``svg.fonttype = path``)
and escapes the text it keeps in comments and titles, and mathtext is disabled by escaping ``$``, so a label
cannot inject anything.
"""

from __future__ import annotations

import io
import re
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


_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def _encode(figure: Any) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "path", "svg.hashsalt": "harness-report"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None}, facecolor="white")
    plt.close(figure)
    svg = _PROLOGUE.sub("", buffer.getvalue(), count=1)
    # Scale with the page: keep the viewBox, let CSS set the width.
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', svg, count=1)
    return svg


def ranking_intervals(metric: str, unit: str, rankings: Sequence[Any]) -> str:
    """One panel per ranking group: each algorithm's IQM and interval, tied ranks hatched alike."""
    plt = _pyplot()
    groups = list(rankings)[:MAX_PANELS]
    columns = min(3, len(groups))
    rows = (len(groups) + columns - 1) // columns
    height = 0.6 + 0.35 * max(2, max(len(g.rows) for g in groups))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, height * rows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, ranking in zip(axes.flat, groups, strict=False):
        for position, row in enumerate(ranking.rows):
            estimate = row.estimate
            colour = colours(position % 10)
            if estimate.has_interval:
                axis.barh(position, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colour,
                          alpha=0.35)  # fmt: skip
            axis.plot([estimate.value], [position], "|", color=colour, markersize=14, markeredgewidth=2)
        axis.set_yticks(range(len(ranking.rows)), [_text(f"{r.rank_label} {r.algorithm}") for r in ranking.rows])
        axis.invert_yaxis()
        axis.set_title(_text(ranking.group), fontsize="medium")
        axis.set_xlabel(_text(f"{metric} ({unit})" if unit and unit != "1" else metric))
        axis.grid(axis="x", alpha=0.3)
    for axis in list(axes.flat)[len(groups) :]:
        axis.axis("off")
    figure.tight_layout()
    return _encode(figure)


def pareto(x_info: Any, y_info: Any, points: Mapping[tuple[str, str], tuple[float, float]]) -> str:
    """A declared trade-off: one point per (algorithm, environment) case, the Pareto front drawn as a step line."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    algorithms = sorted({algorithm for algorithm, _ in points})
    colours = plt.get_cmap("tab10")
    for index, algorithm in enumerate(algorithms):
        mine = [(x, y) for (a, _env), (x, y) in points.items() if a == algorithm]
        axis.scatter([p[0] for p in mine], [p[1] for p in mine], color=colours(index % 10), label=_text(algorithm),
                     s=28)  # fmt: skip
    front = pareto_front(list(points.values()), x_info.higher_is_better, y_info.higher_is_better)
    if len(front) >= 1:
        axis.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1.2,
                  label="Pareto front")  # fmt: skip
    axis.set_xlabel(_text(f"{x_info.name} ({x_info.unit}) {'↑' if x_info.higher_is_better else '↓'}"))
    axis.set_ylabel(_text(f"{y_info.name} ({y_info.unit}) {'↑' if y_info.higher_is_better else '↓'}"))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
    axis.set_title(_text(f"{y_info.name} against {x_info.name}"))
    return _encode(figure)


def pareto_front(points: Sequence[tuple[float, float]], x_higher: bool, y_higher: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (in each axis's direction), sorted by x."""
    sx, sy = (1 if x_higher else -1), (1 if y_higher else -1)
    front = []
    for x, y in points:
        dominated = any(sx * ox >= sx * x and sy * oy >= sy * y and (ox, oy) != (x, y) for ox, oy in points)
        if not dominated and (x, y) not in front:
            front.append((x, y))
    return sorted(front)


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
    values: Mapping[tuple[str, str], Sequence[float]],
    ceilings: Mapping[str, Sequence[float]],
    ceiling_metric: str,
) -> str:
    """Throughput per environment and algorithm (median, error bars min to max over seeds) against the
    measured ceiling of each environment (its median as a line, its min-max range shaded)."""
    plt = _pyplot()
    environments = sorted({env for _algorithm, env in values})
    algorithms = sorted({algorithm for algorithm, _env in values})
    figure, axis = plt.subplots(figsize=(max(6.0, 0.9 * len(environments) + 3), 4))
    positions = np.arange(len(environments))
    width = 0.8 / max(1, len(algorithms))
    for index, algorithm in enumerate(algorithms):
        medians, lows, highs = [], [], []
        for env in environments:
            samples = np.asarray(values.get((algorithm, env), []), dtype=float)
            if samples.size:
                median = float(np.median(samples))
                medians.append(median)
                lows.append(median - samples.min())
                highs.append(samples.max() - median)
            else:
                medians.append(np.nan)
                lows.append(0.0)
                highs.append(0.0)
        axis.bar(positions + index * width - 0.4 + width / 2, medians, width, yerr=[lows, highs], capsize=3,
                 label=_text(algorithm))  # fmt: skip
    for position, env in zip(positions, environments, strict=True):
        samples = np.asarray(ceilings.get(env, []), dtype=float)
        if samples.size:
            axis.hlines(float(np.median(samples)), position - 0.45, position + 0.45, colors="black", linestyles="--")
            axis.fill_between([position - 0.45, position + 0.45], samples.min(), samples.max(), color="black",
                              alpha=0.12, linewidth=0)  # fmt: skip
    axis.plot([], [], "k--", label=_text(f"measured ceiling ({ceiling_metric})"))
    axis.set_xticks(positions, [_text(env) for env in environments], rotation=30, ha="right")
    axis.set_ylabel(_text(f"{metric} (GB/s)"))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize="small")
    axis.set_title(_text(f"{metric} against the measured bandwidth ceiling"))
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
