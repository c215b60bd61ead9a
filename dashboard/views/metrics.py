"""Diversity metrics: every diagnostic of every set in one table, the best synthetic value highlighted."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import BETTER, REAL, similarity_spectrum

from .. import charts
from ..runner import RunResult
from . import intro

CAPTION = ("What to look for: green marks the synthetic set closest to real data on each metric (lowest "
           "similarity, highest rank/recall, spread ratio nearest 1). Real is the reference row.")
HIGHLIGHT = "background-color: rgba(44,160,44,0.3); font-weight: bold"
ID_COLUMNS = ("set", "source", "seed")


def best_mask(df: pd.DataFrame) -> pd.DataFrame:
    """True where a synthetic set's value is the best of its column (the Real row never competes)."""
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    synthetic = df["set"] != REAL
    for col, direction in BETTER.items():
        if col not in df or direction is None or not synthetic.any():
            continue
        values = df.loc[synthetic, col].astype(float)
        score = {"low": values, "high": -values, "one": (values - 1).abs()}[direction]
        if score.notna().any():
            mask.loc[score.index[score == score.min()], col] = True
    return mask


def styled(df: pd.DataFrame):
    mask = best_mask(df)
    numeric = [c for c in df.columns if c not in ID_COLUMNS]
    return (df.style.apply(lambda _: mask.map(lambda b: HIGHLIGHT if b else ""), axis=None)
            .format("{:.3f}", subset=numeric))


def render(result: RunResult | None) -> None:
    if not intro(CAPTION, result):
        return
    df = result.metrics.drop(columns=["source"])
    st.dataframe(styled(df), hide_index=True, key="metrics_table")
    with st.expander("What the metrics mean"):
        st.markdown(
            "- **mean_cosine_similarity / feature_cosine_similarity**: average similarity between two samples, "
            "in pixels / penultimate features (1 = identical). Pixel similarity misleads on MNIST (shared black "
            "background).\n- **effective_rank**: how many directions the batch spans.\n"
            "- **stat_spread_ratio / std_spread_ratio**: spread of per-sample BN statistics relative to real (1 = "
            "as diverse as real).\n- **frechet_distance, precision, recall**: distance to and coverage of the real "
            "feature distribution.\n- **class_entropy / class_coverage**: how evenly the predicted classes spread.\n"
            "- **in_band_fraction**: share of per-sample statistics inside the SDA slack band.")
    spectra = {name: similarity_spectrum(p.features) for name, p in result.diagnosis.probes.items()}
    st.plotly_chart(charts.spectrum(spectra), key="spectrum")
    st.caption("Feature-space similarity spectrum: a homogenized set puts most of the weight on the first eigenvalue.")
