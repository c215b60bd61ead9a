"""Diversity vs accuracy: does a diversity metric predict quantized accuracy, across sets, seeds and runs?"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import BETTER
from dsg_core.runstore import RunStore
from dsg_core.sources import label

from .. import charts, evidence_bundle
from .evidence import spread_correlations
from .metric_names import WORDS

CAPTION = ("One point per set and seed (pooled with the saved runs of this model): a metric that predicts accuracy "
           "lines the points up (a rank correlation far from 0).")


MIN_POINTS = 8  # fewer points than this and a rank correlation is noise: it is not computed


def points(metrics: pd.DataFrame, results: pd.DataFrame, bits: str, quantizer: str, run: str,
           title: str) -> pd.DataFrame:
    """One row per set and seed: its metrics joined with its top-1 at one cell."""
    res = results[(results["bits"] == bits) & (results["quantizer"] == quantizer)][["source", "seed", "top1"]]
    out = metrics.merge(res, on=["source", "seed"])
    return out.assign(run=run, title=title)


def history_points(store: RunStore, model: str, bits: str, quantizer: str, skip: int | None) -> list[pd.DataFrame]:
    frames = []
    for run in store.list(model):
        if run.id != skip and run.results:
            metrics = pd.DataFrame(run.metric_rows())
            if metrics.empty:
                continue
            metrics["set"] = metrics["source"].map(label)
            frames.append(points(metrics, pd.DataFrame(run.results), bits, quantizer, f"#{run.id}", run.title))
    return frames


def correlations(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Spearman rank correlation of each metric with top-1 over the synthetic sets, with its n;
    none below MIN_POINTS points or where the metric does not vary."""
    syn = df[df["source"] != "real"]
    rows = []
    for m in metrics:
        pair = syn[[m, "top1"]].astype(float).dropna()
        rho = (pair[m].corr(pair["top1"], method="spearman")
               if len(pair) >= MIN_POINTS and pair[m].nunique() > 1 else float("nan"))
        rows.append({"metric": WORDS.get(m, (m,))[0], "Spearman ρ": rho, "n": len(pair)})
    return pd.DataFrame(rows)


def render(result, store: RunStore) -> None:
    st.subheader("Does a diversity metric predict accuracy?")
    st.caption(CAPTION)
    metric_names = [m for m in BETTER if m in result.metrics]
    cells = result.results[["bits", "quantizer"]].drop_duplicates().values.tolist()
    c1, c2, c3 = st.columns([2, 1, 1])
    metric = c1.selectbox("Diversity metric", metric_names, key="metric", bind="query-params",
                          index=metric_names.index("stat_spread_ratio") if "stat_spread_ratio" in metric_names else 0,
                          format_func=lambda m: WORDS.get(m, (m,))[0])
    bits, quantizer = c2.selectbox("Cell", cells, index=len(cells) - 1, key="tradeoff_cell",
                                   format_func=lambda c: f"{c[0]} {c[1]}")
    pool = c3.toggle("All saved runs", True, key="pool", bind="query-params",
                     help="Pool the sets of every saved run of this model (more points for the correlation)")
    current = points(result.metrics, result.results, bits, quantizer,
                     f"#{result.run_id}" if result.run_id else "current", result.plan.title or "this run")
    frames = [current] + (history_points(store, result.plan.model, bits, quantizer, result.run_id) if pool else [])
    df = pd.concat(frames, ignore_index=True)
    st.plotly_chart(charts.diversity_vs_accuracy(df, metric, " ".join(WORDS.get(metric, (metric, ""))[:2])),
                    key="tradeoff")
    table = correlations(df, metric_names)
    table["Spearman ρ"] = [f"{v:+.2f}" if v == v else ("too few points" if n < MIN_POINTS else "metric constant")
                           for v, n in zip(table["Spearman ρ"], table["n"])]
    st.dataframe(table, hide_index=True, key="correlations", height="content")  # every metric, no scrolling
    n = int((df["source"] != "real").sum())
    bundle = evidence_bundle.load()
    words = bundle.memo(spread_correlations, result.plan.model) if bundle is not None else []
    st.caption(f"{n} synthetic points from {df['run'].nunique()} run(s). A correlation needs at least {MIN_POINTS}, "
               "and a few runs' points are not the evidence"
               + (": over the evidence bundle's sets, the BN-statistics spread against W3A3 min/max top-1 — "
                  + "; ".join(words) + " (Evidence page, section 5)." if words else "."))
