"""Report figures, drawn with matplotlib and embedded in the page as inline SVG (vector, sharp at any zoom).

Every function returns SVG markup (``<svg ...>...</svg>``), so the HTML page needs no other file and no
network. Labels come from runs and plugins; matplotlib draws text as glyph paths (``svg.fonttype = path``)
and escapes the text it keeps in comments and titles, and mathtext is disabled by escaping ``$``, so a label
cannot inject anything.
"""

from __future__ import annotations

import io
import math
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


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")  # fmt: skip


def ranking_intervals(metric: str, unit: str, rankings: Sequence[Any]) -> str:
    """A forest plot drawn directly as SVG: per ranking group, each algorithm's IQM (tick) and interval (bar).

    Every row has a ``<title>`` (the hover tooltip) with the exact numbers; labels are XML-escaped. Each group
    has its own x scale (environments are not comparable), shown by its min and max tick.
    """
    from html import escape

    label_width, plot_width, right, row_height, head = 260, 520, 90, 20, 24
    width = label_width + plot_width + right
    parts: list[str] = []
    y = 6
    for ranking in list(rankings)[: MAX_PANELS * 2]:
        estimates = [row.estimate for row in ranking.rows]
        bounds = [v for e in estimates for v in ((e.low, e.high) if e.has_interval else (e.value, e.value))]
        bounds = [v for v in bounds if np.isfinite(v)]
        if not bounds:
            continue
        low, high = min(bounds), max(bounds)
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad

        def x(value: float, low: float = low, high: float = high) -> float:
            return label_width + (value - low) / (high - low) * plot_width

        parts.append(f'<text x="4" y="{y + 15}" font-weight="600" font-size="13">{escape(ranking.group)}</text>')
        parts.append(
            f'<text x="{label_width}" y="{y + 15}" font-size="11" fill="#666">{escape(f"{low:.4g}")}</text>'
            f'<text x="{label_width + plot_width}" y="{y + 15}" font-size="11" fill="#666" text-anchor="end">'
            f"{escape(f'{high:.4g}')}</text>"
        )
        y += head
        for index, row in enumerate(ranking.rows):
            e = row.estimate
            colour = _PALETTE[index % len(_PALETTE)]
            middle = y + row_height / 2
            interval = f" [{e.low:.4g}, {e.high:.4g}]" if e.has_interval else " (no interval: n<2)"
            tip = f"{row.rank_label} {row.algorithm}: IQM {e.value:.6g}{interval}, {e.n_runs} runs"
            parts.append(f"<g><title>{escape(tip)}</title>")
            parts.append(
                f'<text x="4" y="{middle + 4}" font-size="12">{escape(f"{row.rank_label} {row.algorithm}"[:40])}</text>'
            )
            if e.has_interval:
                parts.append(
                    f'<rect x="{x(e.low):.1f}" y="{middle - 5}" width="{max(1.0, x(e.high) - x(e.low)):.1f}" '
                    f'height="10" fill="{colour}" fill-opacity="0.35"/>'
                )
            parts.append(
                f'<line x1="{x(e.value):.1f}" x2="{x(e.value):.1f}" y1="{middle - 8}" y2="{middle + 8}" '
                f'stroke="{colour}" stroke-width="2.5"/>'
            )
            parts.append(
                f'<text x="{label_width + plot_width + 6}" y="{middle + 4}" font-size="11">'
                f"{escape(f'{e.value:.4g}')}</text></g>"
            )
            y += row_height
        parts.append(
            f'<line x1="{label_width}" x2="{label_width + plot_width}" y1="{y + 2}" y2="{y + 2}" stroke="#999"/>'
        )
        y += 12
    axis_label = escape(f"{metric} ({unit})" if unit and unit != "1" else metric)
    parts.append(f'<text x="{label_width + plot_width / 2}" y="{y + 12}" font-size="12" text-anchor="middle">'
                 f"{axis_label}: IQM and 95% interval per ranking group</text>")  # fmt: skip
    y += 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {y}" class="plot forest" role="img" '
        f'font-family="system-ui, sans-serif">' + "".join(parts) + "</svg>"
    )


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
    """Fraction of runs better than each threshold, per algorithm, with bootstrap bands (SVG drawn directly;
    each line has a hover title)."""
    series = {name: (p.thresholds, p.fraction, p.low, p.high) for name, p in profiles.items()}
    return svg_lines(
        f"Performance profile of {metric}",
        f"{metric} threshold τ" + (f" ({unit})" if unit and unit != "1" else ""),
        "fraction of runs " + ("> τ" if higher else "< τ"),
        series,
        y_range=(0.0, 1.0),
    )


def svg_lines(
    title: str,
    x_label: str,
    y_label: str,
    series: Mapping[str, tuple[Any, Any, Any, Any]],
    y_range: tuple[float, float] | None = None,
) -> str:
    """A line chart with optional bands, as SVG markup: ``series`` maps a name to ``(x, y, low, high)``
    (``low``/``high`` may be all NaN: no band). Labels are XML-escaped."""
    from html import escape

    left, top, width, height, legend = 64, 28, 560, 300, 200
    total_width, total_height = left + width + legend, top + height + 48
    xs = np.concatenate([np.asarray(s[0], dtype=float) for s in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(v, dtype=float).ravel() for s in series.values() for v in s[1:]])
    ys = ys[np.isfinite(ys)] if ys.size else np.zeros(1)
    x_low, x_high = float(np.nanmin(xs)), float(np.nanmax(xs))
    y_low, y_high = y_range if y_range else (float(ys.min()) if ys.size else 0.0, float(ys.max()) if ys.size else 1.0)
    x_high = x_high if x_high > x_low else x_low + 1
    y_high = y_high if y_high > y_low else y_low + 1

    def px(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * width

    def py(value: float) -> float:
        return top + height - (value - y_low) / (y_high - y_low) * height

    parts = [
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>',
        f'<text x="{left + width / 2}" y="16" font-size="13" text-anchor="middle" font-weight="600">'
        f"{escape(title)}</text>",
        f'<text x="{left + width / 2}" y="{top + height + 36}" font-size="12" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        f'<text x="14" y="{top + height / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + height / 2})">{escape(y_label)}</text>',
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        xv, yv = x_low + fraction * (x_high - x_low), y_low + fraction * (y_high - y_low)
        parts.append(f'<line x1="{px(xv):.1f}" x2="{px(xv):.1f}" y1="{top}" y2="{top + height}" stroke="#ddd"/>')
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{px(xv):.1f}" y="{top + height + 16}" font-size="11" text-anchor="middle">'
                     f"{escape(f'{xv:.3g}')}</text>")  # fmt: skip
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{escape(f'{yv:.3g}')}</text>")  # fmt: skip
    for index, (name, (x, y, low, high)) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        parts.append(f"<g><title>{escape(str(name))}</title>")
        if low.size == x.size and np.isfinite(low).all() and np.isfinite(high).all():
            outline = [f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, high, strict=True)]
            outline += [f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x[::-1], low[::-1], strict=True)]
            parts.append(f'<polygon points="{" ".join(outline)}" fill="{colour}" fill-opacity="0.18"/>')
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y, strict=True) if np.isfinite(b))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/></g>')
        legend_y = top + 14 + 18 * index
        parts.append(f'<line x1="{left + width + 12}" x2="{left + width + 32}" y1="{legend_y - 4}" '
                     f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="3"/>')  # fmt: skip
        parts.append(f'<text x="{left + width + 38}" y="{legend_y}" font-size="12">{escape(str(name)[:24])}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_width} {total_height}" class="plot lines" '
        f'role="img" font-family="system-ui, sans-serif">' + "".join(parts) + "</svg>"
    )


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


def natural_key(text: str) -> list[Any]:
    """Sort key that orders the numbers inside labels by value: ``n=10000`` before ``n=1000000``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def roofline(
    metric: str,
    values: Mapping[tuple[str, str], Sequence[float]],
    ceilings: Mapping[str, Sequence[float]],
    ceiling_metric: str,
) -> str:
    """Throughput per environment and algorithm (median, error bars min to max over seeds) against the
    measured ceiling of each environment (its median as a line, its min-max range shaded)."""
    plt = _pyplot()
    # Natural order (vector[n=10000] before vector[n=1000000]): the x axis reads as a size sweep, the paper's figure.
    environments = sorted({env for _algorithm, env in values}, key=natural_key)
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
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
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
    # At most ~12 labelled ticks (and always the newest night): 100 nights of labels would overlap.
    step = max(1, math.ceil(len(labels) / 12))
    shown = sorted({*range(0, len(labels), step), len(labels) - 1})
    axis.set_xticks(shown, [_text(labels[i]) for i in shown], rotation=45, ha="right", fontsize="x-small")
    axis.set_xlabel("night (date and commit under test)")
    axis.set_ylabel(_text(f"{metric} ({unit})" if unit else metric))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
    axis.set_title(_text(f"{metric} across runs (dotted: change points, flat lines: segment means)"))
    return _encode(figure)
