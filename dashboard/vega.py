"""Altair (Vega-Lite) figure builders for the charts of seeds, statistics and their replay.

Why beside Plotly (``charts.py``): on 2 cores Plotly's first chart costs chromium about 2 s of CPU and
Vega-Lite's about 0.9 s, each further Vega-Lite chart 0.2-0.5 s (docs/dashboard-speed.md), and the
Evidence page, which a visitor meets first, must show its charts within 5 s. Data frames in, charts out; the colours are
``charts.COLORS``, so DSG is the same red in both libraries.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from .charts import COLORS, ORDER

PANEL_ORDER = ["free", "clamp-after", "clip"]
FALLBACK = "#444444"


def spec(chart) -> dict:
    """The chart as a Vega-Lite spec with its data inline: made once per bundle and kept (``Bundle.memo``),
    so a page view does not pay Altair's schema validation (about 0.1 s a chart on these cores)."""
    return chart.to_dict()


def _order(names) -> list[str]:
    """Set names in the project's order (names outside ``ORDER`` after it, as they come)."""
    present = list(dict.fromkeys(names))
    return [n for n in ORDER["set"] if n in present] + [n for n in present if n not in ORDER["set"]]


def _colour(names) -> alt.Scale:
    """One colour per set name, in the project's order."""
    domain = _order(names)
    return alt.Scale(domain=domain, range=[COLORS.get(n.split(" [")[0], FALLBACK) for n in domain])


def _finish(chart, title: str | alt.TitleParams, height: int):
    return chart.properties(title=title, height=height).configure_legend(orient="bottom", title=None)


# ------------------------------------------------------------------------------------ seeds as dots
def seed_dots(df: pd.DataFrame, fp32: float | None, title: str, *, x: str = "set", group: str | None = None,
              reference: pd.DataFrame | None = None, lines: dict[str, float] | None = None, height: int = 360,
              test_images: int | None = None, floor: float = 0, marks: tuple = ()):
    """Top-1 per group, every seed a dot, mean ± std (population std) an error bar with a tick at the
    mean, the range-jitter mean of each seed a hollow diamond. ``group`` splits each x position by
    set (side by side, e.g. x = pixel handling); ``reference`` (the bundle's seeds for the same cell)
    is a grey min-max bar behind ("your run against 10 seeds"); ``lines``: name -> a dashed level
    (e.g. ZeroQ's and real data's means); FP32 is a black dashed line, labelled with ``test_images``
    when given (a live run scores fewer images than the bundle, so its FP32 differs). ``floor``: the
    axis' lower end, above 0 where the differences that matter are a point or less (no value lies below it);
    ``marks``: more layers on the same axes (e.g. a pass line per x position)."""
    by = [x] + ([group] if group else [])
    colour_field = group or x
    order = _order(df[colour_field])
    xs = [p for p in PANEL_ORDER if p in set(df[x])] or list(dict.fromkeys(df[x]))
    enc = {"x": alt.X(f"{x}:N", sort=xs if group else order, title=None, axis=alt.Axis(labelAngle=0)),
           "color": alt.Color(f"{colour_field}:N", scale=_colour(df[colour_field]),
                              legend=alt.Legend(title=None) if group else None)}
    if group:
        enc["xOffset"] = alt.XOffset(f"{group}:N", sort=order)
    y = alt.Y("top1:Q", title="top-1 (%)", scale=alt.Scale(domain=[floor, 101], nice=not floor))
    tip = [alt.Tooltip(f"{colour_field}:N", title="set"), alt.Tooltip("seed:O"), alt.Tooltip("top1:Q", format=".1f")]
    base = alt.Chart(df)
    layers = []
    if reference is not None and len(reference):
        ref = reference.groupby(x).top1.agg(lo="min", hi="max", n="count").reset_index()
        layers.append(alt.Chart(ref).mark_bar(color="#bbbbbb", opacity=0.5, size=28).encode(
            x=enc["x"], y=alt.Y("lo:Q", scale=alt.Scale(domain=[floor, 101]), title="top-1 (%)"), y2="hi:Q",
            tooltip=[alt.Tooltip("lo:Q", title="bundle min", format=".1f"),
                     alt.Tooltip("hi:Q", title="bundle max", format=".1f"), alt.Tooltip("n:Q", title="seeds")]))
    layers.append(base.mark_circle(size=70, opacity=0.7).encode(y=y, tooltip=tip, **enc))
    layers += list(marks)
    stats = df.groupby(by, sort=False).top1.agg(mean="mean", std=lambda v: v.std(ddof=0), n="count").reset_index()
    # the bar stops at the axis' ends: top-1 cannot leave 0-100, and a bar past 100 reads as a value
    stats = stats.assign(lo=(stats["mean"] - stats["std"]).clip(lower=floor),
                         hi=(stats["mean"] + stats["std"]).clip(upper=100))
    multi = stats[stats.n > 1]
    if len(multi):
        stip = [alt.Tooltip(f"{colour_field}:N", title="set"), alt.Tooltip("mean:Q", format=".1f"),
                alt.Tooltip("std:Q", format=".1f"), alt.Tooltip("n:Q", title="seeds")]
        stat = alt.Chart(multi)
        layers.append(stat.mark_errorbar(ticks={"size": 14}, thickness=2).encode(
            y=alt.Y("lo:Q", title="top-1 (%)"), y2="hi:Q", tooltip=stip, **enc))
        layers.append(stat.mark_tick(thickness=3, size=22).encode(y="mean:Q", tooltip=stip, **enc))
    if "jitter_mean" in df and df["jitter_mean"].notna().any():
        layers.append(base.transform_filter("isValid(datum.jitter_mean)").mark_point(
            shape="diamond", filled=False, size=60).encode(
            y="jitter_mean:Q", tooltip=[*tip[:2], alt.Tooltip("jitter_mean:Q", title="range-jitter mean",
                                                               format=".1f")], **enc))
    where = f"these {test_images:,}" if test_images else "these"
    levels = [(f"FP32 {fp32:.1f}% on {where} test images", fp32, "black")] if fp32 is not None else []
    levels += [(f"{name} {v:.1f}", v, COLORS.get(name, FALLBACK)) for name, v in (lines or {}).items()]
    for (text, v, colour), lift in zip(levels, label_lifts([v for _, v, _ in levels])):
        rule = alt.Chart(pd.DataFrame({"y": [v], "text": [text]}))
        layers.append(rule.mark_rule(strokeDash=[5, 4], color=colour).encode(y="y:Q"))
        layers.append(rule.mark_text(align="left", baseline="bottom", dy=-2 - LABEL_PX * lift, color=colour).encode(
            y="y:Q", x=alt.value(4), text="text:N"))
    return _finish(alt.layer(*layers), title, height)


def factor_lines(df: pd.DataFrame, title: str, marked: list[float], height: int = 340):
    """Top-1 (``df``: set, seed, factor, top1) against a range factor: a line through each set's means, every
    seed a small dot, and a grey dashed rule at each ``marked`` factor (e.g. the ones a test samples)."""
    order = _order(df["set"])
    colour = alt.Color("set:N", scale=_colour(df["set"]), sort=order, legend=alt.Legend(title=None, symbolOpacity=1))
    ticks = sorted(set(round(f, 1) for f in df.factor))  # tenths: the grid's own steps read as 0.7, 0.8, ...
    x = alt.X("factor:Q", title="every activation range scaled by", scale=alt.Scale(zero=False),
              axis=alt.Axis(values=ticks, format=".1f"))
    y = alt.Y("top1:Q", title="top-1 (%)", scale=alt.Scale(domain=[0, 101]))
    means = df.groupby(["set", "factor"], sort=False).top1.agg(mean="mean", n="count").reset_index()
    rules = alt.Chart(pd.DataFrame({"factor": marked})).mark_rule(strokeDash=[4, 4], color="#888888").encode(
        x="factor:Q", tooltip=[alt.Tooltip("factor:Q", title="factor the goal samples")])
    dots = alt.Chart(df).mark_circle(size=28, opacity=0.45).encode(
        x=x, y=y, color=colour, tooltip=["set:N", "seed:O", alt.Tooltip("factor:Q"),
                                         alt.Tooltip("top1:Q", format=".1f")])
    line = alt.Chart(means).mark_line(point=True, strokeWidth=2.5).encode(
        x=x, y=alt.Y("mean:Q", title="top-1 (%)"), color=colour,
        tooltip=["set:N", alt.Tooltip("factor:Q"), alt.Tooltip("mean:Q", format=".1f"),
                 alt.Tooltip("n:Q", title="seeds")])
    return _finish(alt.layer(rules, dots, line), title, height)


def step_lines(df: pd.DataFrame, title: str, height: int = 400):
    """Top-1 (``df``: set, seed, step, ranges, value) along the generation steps, one cell per chart (a chart
    per cell fits the page's width at any size, where facets have a fixed one): a line through each set's
    mean (solid for the first ``ranges`` value, e.g. the calibrated ranges, dashed for the other) and each
    seed's solid line thin, so a mean over seeds that split into two camps reads as such."""
    stats = df.groupby(["set", "ranges", "step"], sort=False).value.agg(
        mean="mean", lo="min", hi="max", n="count").reset_index()
    colour = alt.Color("set:N", scale=_colour(stats["set"]), legend=alt.Legend(title=None, symbolOpacity=1))
    kinds = sorted(set(df["ranges"]))  # "calibrated" first: solid; range jitter dashed
    # the dash is named in the subtitle: a strokeDash legend draws no symbol under Streamlit's theme
    dash = alt.StrokeDash("ranges:N", scale=alt.Scale(domain=kinds, range=[[1, 0], [6, 4]][:len(kinds)]), legend=None)
    x = alt.X("step:Q", title="generation step")
    tip = ["set:N", "ranges:N", "step:Q", alt.Tooltip("mean:Q", format=".1f"), alt.Tooltip("lo:Q", format=".1f"),
           alt.Tooltip("hi:Q", format=".1f"), alt.Tooltip("n:Q", title="seeds")]
    y = alt.Scale(domain=[0, 101], nice=False)
    seeds = alt.Chart(df[df["ranges"] == kinds[0]]).mark_line(strokeWidth=1, opacity=0.35).encode(
        x=x, y=alt.Y("value:Q", title="top-1 (%)", scale=y), color=colour, detail="seed:N",
        tooltip=["set:N", "seed:O", "step:Q", alt.Tooltip("value:Q", title="top-1", format=".1f")])
    line = alt.Chart(stats).mark_line(point=True, strokeWidth=2.5).encode(
        x=x, y=alt.Y("mean:Q", title="top-1 (%)", scale=y), color=colour,
        strokeDash=dash, tooltip=tip)
    # one short line: Streamlit fits title, legend and plot into ``height``, so every title line costs plot
    subtitle = " · ".join(f"{'solid' if i == 0 else 'dashed'}: {k}" + (" (thin: each seed)" if i == 0 else "")
                          for i, k in enumerate(kinds))
    return _finish(alt.layer(seeds, line), alt.TitleParams(title, subtitle=subtitle, subtitleFontSize=12), height)


def level_ticks(levels: pd.Series, x: str, order: list[str], name: str):
    """A black tick across each x position at its own level (``levels``: x value -> level), e.g. the
    pass line of each cell; a layer for ``seed_dots(marks=...)``."""
    df = pd.DataFrame({x: levels.index, "level": levels.values})
    return alt.Chart(df).mark_tick(color="black", thickness=2, size=90, opacity=0.8).encode(
        x=alt.X(f"{x}:N", sort=order), y="level:Q",
        tooltip=[alt.Tooltip(f"{x}:N"), alt.Tooltip("level:Q", title=name, format=".1f")])


LABEL_PX = 13       # height of a reference line's label
LABEL_POINTS = 5.0  # levels closer than this (top-1 points, about 15 px at the usual height) would overlap


def label_lifts(values: list[float]) -> list[int]:
    """How many label heights each level's label is raised, so that labels of close levels (FP32,
    ZeroQ and real within a point of each other) stack instead of printing over each other."""
    lifts, placed = [0] * len(values), []
    for i in sorted(range(len(values)), key=lambda k: values[k]):
        near = [lifts[j] for j in placed if abs(values[j] - values[i]) < LABEL_POINTS]
        lifts[i] = max(near) + 1 if near else 0
        placed.append(i)
    return lifts


def pixel_panels(df: pd.DataFrame, panels: list[str]) -> pd.DataFrame:
    """One cell's rows arranged for ``seed_dots(x="pixels", group="set")``: per pixel handling, the
    sets made that way, with real images (always in range) in every panel and Gaussian noise, which
    is not optimized, clipped = clamped."""
    parts = []
    for pr in panels:
        same = {"clip": ("clip", "clamp-after")}.get(pr, (pr,))
        noise = (df.source == "gaussian") & df.pixel_range.isin(same)
        part = df[(df.pixel_range == pr) | (df.source == "real") | noise]
        if pr == "clip" and (part.source == "gaussian").any():  # keep one Gaussian entry per seed
            g = part[part.source == "gaussian"].sort_values("pixel_range").drop_duplicates("seed", keep="last")
            part = pd.concat([part[part.source != "gaussian"], g])
        parts.append(part.assign(pixels=pr))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------- per-sample statistics
def _band_layers(bn: tuple[float, float], band: tuple[float, float] | None) -> list:
    """The SDA slack rectangle (±delta on means, ±gamma on stds, DSG paper eq. 6) and the BN point."""
    mu, sigma = bn
    out = []
    if band is not None:
        d, g = band
        box = pd.DataFrame({"x": [mu - d], "x2": [mu + d], "y": [sigma - g], "y2": [sigma + g]})
        out.append(alt.Chart(box).mark_rect(fill="#d62728", fillOpacity=0.07, stroke="#444444", strokeDash=[3, 3])
                   .encode(x="x:Q", x2="x2:Q", y="y:Q", y2="y2:Q"))
    point = pd.DataFrame({"mean": [mu], "std": [sigma], "what": ["BN running stats"]})
    out.append(alt.Chart(point).mark_point(shape="cross", size=220, color="black", filled=True, angle=45)
               .encode(x="mean:Q", y="std:Q", tooltip=["what:N", alt.Tooltip("mean:Q", format=".3g"),
                                                       alt.Tooltip("std:Q", format=".3g")]))
    return out


def _around_band(dots, bn: tuple[float, float], band: tuple[float, float] | None):
    """``dots`` drawn over the slack band and under the BN point."""
    *below, point = _band_layers(bn, band)
    return alt.layer(*below, dots, point)


def channel_scatter(df: pd.DataFrame, bn: tuple[float, float], band: tuple[float, float] | None,
                    height: int = 380):
    """Per-sample (mean, std) of one channel, the BN point (✕) and the SDA slack rectangle around it.
    Columns: set, mean, std, sample."""
    dots = alt.Chart(df).mark_circle(size=45, opacity=0.75).encode(
        x=alt.X("mean:Q", title="per-sample mean", scale=alt.Scale(zero=False)),
        y=alt.Y("std:Q", title="per-sample std", scale=alt.Scale(zero=False)),
        color=alt.Color("set:N", scale=_colour(df.set)),
        tooltip=["set:N", "sample:Q", alt.Tooltip("mean:Q", format=".3g"), alt.Tooltip("std:Q", format=".3g")])
    return _finish(_around_band(dots, bn, band), "Per-sample statistics of one channel", height)


def layer_spread(df: pd.DataFrame, height: int = 380):
    """Spread of per-sample statistics relative to real data, per layer (1 = as diverse as real):
    solid for per-sample means, dashed for per-sample stds. Columns: set, layer, layer_name, statistic, ratio."""
    lines = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("layer:Q", title="BN layer", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("ratio:Q", title="spread relative to real data"),
        color=alt.Color("set:N", scale=_colour(df.set)),
        strokeDash=alt.StrokeDash("statistic:N", sort=["mean", "std"], legend=None),  # the key is the subtitle
        tooltip=["set:N", "layer:Q", "layer_name:N", "statistic:N", alt.Tooltip("ratio:Q", format=".2f")])
    one = alt.Chart(pd.DataFrame({"ratio": [1.0]})).mark_rule(color="black", strokeDash=[2, 3]).encode(y="ratio:Q")
    title = alt.TitleParams("Spread of per-sample BN statistics, relative to real data",
                            subtitle="solid line: per-sample means; dashed line: per-sample stds")
    return _finish(alt.layer(lines, one), title, height)


def replay(frames: pd.DataFrame, bn: tuple[float, float], band: tuple[float, float] | None, height: int = 440):
    """Per-sample (mean, std) of one channel over the iterations, one snapshot at a time under a slider.
    Columns: iteration, set, mean, std. The axes stay fixed so that movement is the data's."""
    mu, sigma = bn
    d, g = band if band is not None else (0.0, 0.0)
    lo_x, hi_x = min(frames["mean"].quantile(0.01), mu - d), max(frames["mean"].quantile(0.99), mu + d)
    lo_y, hi_y = min(frames["std"].quantile(0.01), sigma - g), max(frames["std"].quantile(0.99), sigma + g)
    pad_x, pad_y = 0.1 * (hi_x - lo_x) + 1e-6, 0.1 * (hi_y - lo_y) + 1e-6
    steps = sorted(frames.iteration.unique())
    step = int(min(b - a for a, b in zip(steps, steps[1:]))) if len(steps) > 1 else 1
    it = alt.param(name="iteration", value=int(steps[-1]), bind=alt.binding_range(
        min=int(steps[0]), max=int(steps[-1]), step=step, name="iteration "))
    dots = alt.Chart(frames).mark_circle(size=45, opacity=0.75, clip=True).encode(
        x=alt.X("mean:Q", title="per-sample mean", scale=alt.Scale(domain=[lo_x - pad_x, hi_x + pad_x])),
        y=alt.Y("std:Q", title="per-sample std", scale=alt.Scale(domain=[lo_y - pad_y, hi_y + pad_y])),
        color=alt.Color("set:N", scale=_colour(frames.set)), tooltip=["set:N", "iteration:Q"],
    ).add_params(it).transform_filter(alt.datum.iteration == it)
    return _finish(_around_band(dots, bn, band),
                   "Watch it happen: per-sample statistics while the images are optimized (drag the slider)", height)


# ------------------------------------------------------------------------------------------ live
LIVE_LOSS_SPEC = {  # fixed, so that each tick only sends new rows and the browser updates the view in place
    "title": "Generation loss, one objective per panel",
    "facet": {"column": {"field": "source", "type": "nominal", "title": None}},
    "spec": {"width": 220, "height": 160, "mark": "line",
             "encoding": {"x": {"field": "iteration", "type": "quantitative"},
                          "y": {"field": "loss", "type": "quantitative", "scale": {"type": "log"},
                                "title": "loss (log)"},
                          "color": {"field": "seed", "type": "nominal", "title": "seed"}}},
    "resolve": {"scale": {"y": "independent"}},
}


def live_losses(curves: dict[str, list[float]]) -> pd.DataFrame:
    """The live panel's losses as rows for ``LIVE_LOSS_SPEC``: one small panel per objective
    ('Generate DSG (seed 0)' -> the DSG panel, seed 0), log scale, every 5th iteration."""
    rows = []
    for stage, values in curves.items():
        name, _, seed = stage.removeprefix("Generate ").rpartition(" (seed ")
        rows += [{"source": name or stage, "seed": seed.rstrip(")"), "iteration": i + 1, "loss": v}
                 for i, v in enumerate(values) if i % 5 == 0 and v > 0]
    return pd.DataFrame(rows, columns=["source", "seed", "iteration", "loss"])
