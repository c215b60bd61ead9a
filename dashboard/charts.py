"""Plotly figure builders: data frames in, figures out (no Streamlit, no model work).

Every set has one colour everywhere, so DSG is the same red in the scatter, the histogram and the
accuracy chart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"DSG": "#d62728", "ZeroQ": "#1f77b4", "Gaussian": "#8c8c8c", "Real": "#2ca02c", "BN Gaussian": "#000000",
          "SDA": "#ff7f0e", "LSE": "#9467bd", "SCI": "#8c564b", "SDA+LSE": "#e377c2", "SDA+LSE+SCI": "#d62728",
          "Best": "#17becf", "MCT": "#f5b700"}  # amber: apart from Real's green and Best's cyan
ORDER = {"set": ["DSG", "ZeroQ", "Gaussian", "Real", "BN Gaussian", "Best", "MCT"]}


def _style(fig: go.Figure, height: int = 380) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")
    return fig


def loss_curves(curves: dict[str, list[float]]) -> go.Figure:
    """Generation loss of one objective (QAT's losses, or one source's seeds), log scale."""
    fig = go.Figure()
    for name, values in curves.items():
        if values:
            step = max(1, len(values) // 300)  # the page redraws this every second: keep it light
            colour = COLORS.get(name.split(" · ")[0])
            fig.add_scatter(x=list(range(1, len(values) + 1, step)), y=values[::step], mode="lines", name=name,
                            line=dict(color=colour))
    fig.update_layout(xaxis_title="iteration", yaxis_title="loss", yaxis_type="log", title="Generation loss")
    return _style(fig, 300)


def loss_panels(curves: dict[tuple[str, int], list[float]], height: int = 300) -> go.Figure:
    """One panel per source, its seeds as lines: ZeroQ's L2 and DSG's slack hinge are different
    objectives, so they never share an axis (a lower DSG curve would not mean "converges better")."""
    sources = list(dict.fromkeys(src for src, _ in curves))
    fig = make_subplots(rows=1, cols=max(1, len(sources)), subplot_titles=[f"{s} objective" for s in sources])
    for col, src in enumerate(sources, 1):
        for (name, seed), values in curves.items():
            if name != src or not values:
                continue
            step = max(1, len(values) // 300)
            fig.add_scatter(x=list(range(1, len(values) + 1, step)), y=values[::step], mode="lines",
                            name=f"{src} · seed {seed}", line=dict(color=COLORS.get(src)), opacity=0.8,
                            showlegend=False, row=1, col=col)
        fig.update_yaxes(type="log", dtick=1, row=1, col=col)  # decades only: minor labels crowd a small panel
        fig.update_xaxes(title_text="iteration", row=1, col=col)
    fig.update_layout(title="Generation loss, one objective per panel (log scale)")
    return _style(fig, height).update_layout(margin=dict(t=80))  # room for the title above the panel titles




def activation_histogram(df: pd.DataFrame) -> go.Figure:
    """Pre-BN activation densities of every set against the BN Gaussian N(mu, sigma²)."""
    fig = px.line(df, x="x", y="density", color="set", color_discrete_map=COLORS, category_orders=ORDER,
                  line_shape="hvh", title="Pre-BN activations of the channel vs the BN Gaussian")
    fig.for_each_trace(lambda t: t.update(line=dict(dash="dash", width=3)) if t.name == "BN Gaussian" else None)
    fig.update_layout(xaxis_title="activation", yaxis_title="density")
    return _style(fig)




def sda_band(df: pd.DataFrame, observed: dict[str, pd.DataFrame] | None = None) -> go.Figure:
    """BN mean and std per channel with the ±delta / ±gamma band; optional per-set channel averages."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("BN mean μ ± δ", "BN std σ ± γ"))
    for col, (stat, lo, hi) in enumerate((("mu", "mu_lo", "mu_hi"), ("sigma", "sigma_lo", "sigma_hi")), 1):
        fig.add_scatter(x=df["channel"], y=df[hi], mode="lines", line=dict(width=0), showlegend=False,
                        hoverinfo="skip", row=1, col=col)
        fig.add_scatter(x=df["channel"], y=df[lo], mode="lines", line=dict(width=0), fill="tonexty",
                        fillcolor="rgba(214,39,40,0.15)", name="slack band", showlegend=col == 1, row=1, col=col)
        fig.add_scatter(x=df["channel"], y=df[stat], mode="lines+markers", name="BN running stat",
                        line=dict(color="black"), showlegend=col == 1, row=1, col=col)
        for name, obs in (observed or {}).items():
            fig.add_scatter(x=obs["channel"], y=obs[stat], mode="markers", name=f"{name} (avg over samples)",
                            marker=dict(color=COLORS.get(name), size=6), showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(title_text="channel")
    fig.update_layout(title="SDA slack band")
    return _style(fig)


def embedding(df: pd.DataFrame, color: str) -> go.Figure:
    """2-D embedding of penultimate features; colour by set or by predicted class."""
    df = df.assign(**{"class": df["class"].astype(str)})
    kwargs = dict(color_discrete_map=COLORS, category_orders=ORDER) if color == "set" else {}
    fig = px.scatter(df, x="x", y="y", color=color, symbol="set" if color != "set" else None,
                     hover_data=["set", "class"], custom_data=["set", "index"] if "index" in df else None,
                     opacity=0.8, title="Penultimate features, embedded jointly", **kwargs)
    fig.update_xaxes(showticklabels=False, title_text="")
    fig.update_yaxes(showticklabels=False, title_text="")
    return _style(fig, 480)


def accuracy(results: pd.DataFrame, fp32: float | None) -> go.Figure:
    """Top-1 against bit-width per source: every seed a point, the mean a line, FP32 dashed."""
    order = sorted(results["bits"].unique(), key=bits_key, reverse=True)
    mean = results.groupby(["set", "bits"], as_index=False)["top1"].mean()
    fig = px.line(mean, x="bits", y="top1", color="set", markers=True, color_discrete_map=COLORS,
                  category_orders={**ORDER, "bits": order}, title="Quantized top-1 vs bit-width")
    if results["seed"].nunique() > 1:
        pts = px.strip(results, x="bits", y="top1", color="set", color_discrete_map=COLORS,
                       category_orders={**ORDER, "bits": order}, hover_data=["seed"])
        for t in pts.data:
            t.update(showlegend=False, marker=dict(size=7, opacity=0.6))
            fig.add_trace(t)
    if fp32 is not None:
        fig.add_hline(y=fp32, line_dash="dash", line_color="black", annotation_text=f"FP32 {fp32:.1f}%")
    fig.update_layout(xaxis_title="weight / activation bits", yaxis_title="top-1 (%)")
    return _style(fig, 420)


def bits_key(label: str) -> tuple[int, int]:
    w, a = label[1:].split("A")
    return int(w), int(a)


def diversity_vs_accuracy(df: pd.DataFrame, metric: str, name: str | None = None) -> go.Figure:
    """One point per set, seed and run: a diversity metric against quantized top-1."""
    fig = px.scatter(df, x=metric, y="top1", color="set", color_discrete_map=COLORS, category_orders=ORDER,
                     hover_data=[c for c in ("run", "seed", "title") if c in df], opacity=0.85,
                     title=f"{name or metric} vs quantized top-1", labels={metric: name or metric})
    fig.update_traces(marker=dict(size=10))
    fig.update_layout(yaxis_title="top-1 (%)")
    return _style(fig, 420)


def spectrum(spectra: dict[str, np.ndarray]) -> go.Figure:
    """Eigenvalues of each set's cosine-similarity matrix: one big eigenvalue = homogenized."""
    fig = go.Figure()
    for name, ev in spectra.items():
        fig.add_scatter(y=ev / ev.sum(), mode="lines+markers", name=name, line=dict(color=COLORS.get(name)))
    fig.update_layout(title="Similarity spectrum (normalized eigenvalues)", xaxis_title="index",
                      yaxis_title="share of total", yaxis_type="log")
    return _style(fig, 340)




def pixel_histogram(values: dict[str, np.ndarray], valid: tuple[float, float]) -> go.Figure:
    """Pixel values of each set (normalized units) against the model's valid input range."""
    fig = go.Figure()
    for name, v in values.items():
        fig.add_histogram(x=v, name=name, histnorm="probability density", opacity=0.55, nbinsx=80,
                          marker_color=COLORS.get(name.split(" [")[0]))
    lo, hi = valid
    fig.add_vrect(x0=lo, x1=hi, fillcolor="rgba(44,160,44,0.08)", line_width=0,
                  annotation_text="valid input range", annotation_position="top left")
    fig.update_layout(barmode="overlay", title="Pixel values against the valid input range",
                      xaxis_title="pixel value (normalized units)", yaxis_title="density", yaxis_type="log",
                      yaxis_dtick=1)
    return _style(fig, 340)
