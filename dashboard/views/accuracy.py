"""Quantized accuracy: top-1 against bit-width for each calibration source, every seed shown."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import charts
from ..runner import RunResult
from ..state import EPSILONS
from . import intro

CAPTION = ("What to look for: where the lines separate. High bit-widths are saturated (every source near "
           "FP32); the calibration data matters at the low-bit cliff, where single seeds can swing widely.")


def fp32_of(results: pd.DataFrame) -> float | None:
    return float(results["fp32_top1"].iloc[0]) if len(results) else None


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Set x bit-width table of mean top-1, with ± std over seeds when several seeds ran."""
    g = results.groupby(["set", "bits"])["top1"]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    stats["top1"] = [f"{m:.1f}" + (f" ± {s:.1f}" if n > 1 else "") for m, s, n in
                     zip(stats["mean"], stats["std"], stats["count"])]
    order = sorted(results["bits"].unique(), key=charts.bits_key, reverse=True)
    return stats.pivot(index="set", columns="bits", values="top1")[order]


GRID_LUCK = ("On the MNIST models a single low-bit result can be the grid's luck: their constant background "
             "makes rounding an offset over whole regions, and scaling the calibrated ranges by 0.9-1.1 moves a "
             "W4A4 result by tens of points (docs/aliasing.md). Compare several seeds, or check one result with "
             "`python -m dsg_core quantize --range-jitter`.")


def render(result: RunResult | None, busy: bool = False) -> bool:
    """Draw the view; True when the user asked for the epsilon ablation (the app starts it)."""
    if not intro(CAPTION, result):
        return False
    res = result.results
    fp32 = fp32_of(res)
    st.plotly_chart(charts.accuracy(res, fp32), key="accuracy")
    q = result.settings.quantizer
    st.markdown(f"Top-1 (%) on the real test split, quantizer **{q}**"
                + (f", mean ± std over {res['seed'].nunique()} seeds" if res["seed"].nunique() > 1 else "")
                + (f"; FP32 {fp32:.2f}%" if fp32 is not None else ""))
    st.dataframe(summary(res), key="accuracy_table")
    st.caption(GRID_LUCK)
    with st.expander("Every result row"):
        st.dataframe(res, hide_index=True)
    return ablation(result, busy)


def ablation(result: RunResult, busy: bool) -> bool:
    """The paper's epsilon ablation: DSG's top-1 at the chosen bit-width against the slack quantile."""
    st.subheader("ε ablation")
    s = result.settings
    if result.ablation is not None:
        st.plotly_chart(charts.epsilon_ablation(result.ablation, fp32_of(result.results)), key="ablation")
    eps = ", ".join(f"{e:g}" for e in EPSILONS)
    st.caption(f"Generates DSG at ε = {eps} ({s.samples} samples, {s.iters} iterations, {s.seeds} seed(s)) and "
               f"quantizes at W{s.wbits}A{s.abits}: about {len(EPSILONS) - 1} more generations.")
    return st.button("Compute the ε ablation", key="ablation_run", disabled=busy)
