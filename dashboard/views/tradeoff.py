"""Diversity vs accuracy: does a diversity metric predict quantized accuracy, across sets, seeds and runs?"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import BETTER
from dsg_core.runstore import RunStore

from .. import charts
from ..runner import RunResult, stored_metrics
from . import intro

CAPTION = ("What to look for: a metric that predicts accuracy lines points up along one direction (a rank "
           "correlation far from 0). Pool many runs and seeds in the history before trusting a trend.")


def points(metrics: pd.DataFrame, results: pd.DataFrame, bits: str, run: str, title: str) -> pd.DataFrame:
    """One row per set and seed: its metrics joined with its top-1 at ``bits``."""
    res = results[results["bits"] == bits][["source", "seed", "top1"]]
    out = metrics.merge(res, on=["source", "seed"])
    return out.assign(run=run, title=title)


def history_points(store: RunStore, model: str, bits: str, skip: int | None) -> list[pd.DataFrame]:
    frames = []
    for run in store.list(model):
        if run.id != skip and run.results:
            frames.append(points(stored_metrics(run), pd.DataFrame(run.results), bits, f"#{run.id}", run.title))
    return frames


def correlations(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Spearman rank correlation of each metric with top-1 (synthetic sets only)."""
    syn = df[df["source"] != "real"]
    rho = {m: syn[m].astype(float).corr(syn["top1"].astype(float), method="spearman") for m in metrics}
    return pd.DataFrame({"metric": list(rho), "spearman_rho": list(rho.values()), "points": len(syn)})


def render(result: RunResult | None, store: RunStore) -> None:
    if not intro(CAPTION, result):
        return
    metric_names = [m for m in BETTER if m in result.metrics]
    bit_labels = list(result.results["bits"].unique())
    c1, c2, c3 = st.columns([2, 1, 1])
    metric = c1.selectbox("Diversity metric", metric_names, key="metric", bind="query-params",
                          index=metric_names.index("feature_cosine_similarity")
                          if "feature_cosine_similarity" in metric_names else 0)
    bits = c2.selectbox("Bit-width", bit_labels, key="tradeoff_bits", bind="query-params",
                        index=len(bit_labels) - 1)
    pool = c3.toggle("All runs of this model", True, key="pool", bind="query-params")
    current = points(result.metrics, result.results, bits, f"#{result.run_id}" if result.run_id else "current",
                     result.settings.title)
    frames = [current] + (history_points(store, result.settings.model, bits, result.run_id) if pool else [])
    df = pd.concat(frames, ignore_index=True)
    st.plotly_chart(charts.diversity_vs_accuracy(df, metric), key="tradeoff")
    st.dataframe(correlations(df, metric_names).style.format({"spearman_rho": "{:+.2f}"}), hide_index=True,
                 key="correlations")
