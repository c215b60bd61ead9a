"""The diversity metrics in words: a name with its unit, a tooltip, and "closest to real" computed as
the distance to real data's own value (not "highest" or "lowest")."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import REAL

# metric -> (name in words, unit, what it measures)
WORDS = {
    "stat_spread_ratio": ("Spread of BN means", "× real", "How much per-sample BN-input means vary, relative to "
                          "real data (1 = as varied as real; below 1 = homogenized)"),
    "std_spread_ratio": ("Spread of BN stds", "× real", "The same for per-sample standard deviations"),
    "feature_cosine_similarity": ("Feature similarity", "cosine", "Average similarity of two samples' penultimate "
                                  "features (1 = identical)"),
    "mean_cosine_similarity": ("Pixel similarity", "cosine", "Average similarity of two samples' pixels; misleads "
                               "on MNIST, whose images share a black background"),
    "feature_effective_rank": ("Feature directions", "eff. rank", "How many directions the features span"),
    "effective_rank": ("Pixel directions", "eff. rank", "How many directions the pixels span"),
    "frechet_distance": ("Distance to real features", "Fréchet", "Fréchet distance between the feature "
                         "distributions of the set and real data (0 = same)"),
    "precision": ("Realism", "k-NN precision", "Share of samples that fall inside real data's feature manifold"),
    "recall": ("Coverage of real data", "k-NN recall", "Share of real samples whose neighbourhood a synthetic "
               "sample reaches"),
    "class_entropy": ("Class balance", "entropy / log K", "Entropy of the predicted classes (1 = every class "
                      "equally)"),
    "class_coverage": ("Classes present", "share", "Share of classes predicted at least once"),
    "in_band_fraction": ("Inside the slack band", "share", "Share of per-sample statistics within μ ± δ, σ ± γ"),
    "mean_confidence": ("Model confidence", "softmax", "Average top-class probability the model gives the samples"),
    "out_of_range_fraction": ("Pixels out of range", "share", "Share of pixels outside the model's valid input "
                              "range"),
}
HIGHLIGHT = "background-color: rgba(44,160,44,0.3); font-weight: bold"


def closest_to_real(df: pd.DataFrame) -> pd.DataFrame:
    """True where a synthetic set's mean value is the nearest to real data's, per metric; no mark
    where the synthetic sets tie (recall 0.000 for all is nobody's win) or real has no value."""
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    if REAL not in df.index:
        return mask
    for col in df.columns:
        values = df[col].astype(float)
        real, synthetic = values[REAL], values.drop(REAL)
        if real != real or synthetic.isna().all() or synthetic.nunique() <= 1:
            continue
        distance = (synthetic - real).abs()
        mask.loc[distance.idxmin(), col] = True
    return mask


def metric_table(metrics: pd.DataFrame) -> None:
    """Mean over seeds per set (± std when several seeds ran): one row per metric, named in words with
    its unit and what it measures, one column per set — narrow enough for a 900 px window."""
    numeric = [c for c in WORDS if c in metrics.columns]
    mean = metrics.groupby("set", sort=False)[numeric].mean()
    std = metrics.groupby("set", sort=False)[numeric].std(ddof=0)
    seeds = metrics["seed"].nunique()
    mask = closest_to_real(mean).T
    shown = mean.map(lambda v: f"{v:.3g}")
    if seeds > 1:
        shown = shown + " ± " + std.map(lambda v: f"{v:.2g}")
    table = shown.T
    names = [f"{WORDS[c][0]} ({WORDS[c][1]})" for c in table.index]
    table.index, mask.index = names, names
    table["what it measures"] = [WORDS[c][2] for c in numeric]
    mask["what it measures"] = False
    styled = table.style.apply(lambda _: mask.map(lambda b: HIGHLIGHT if b else ""), axis=None)
    st.markdown(f"**Diversity metrics**, {'mean ± std over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'}. "
                "Green: the synthetic set nearest to real data's own value (a distance, so 'more' is not always "
                "better); no mark where the synthetic sets tie.")
    st.dataframe(styled, key="metrics_table", column_config={"what it measures": st.column_config.TextColumn(
        "what it measures", width="large")})
