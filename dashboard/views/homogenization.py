"""Homogenization: per-sample statistics of one channel, its activation histogram, spread per layer, SDA band."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import views as dv

from .. import charts
from ..runner import RunResult
from . import intro

CAPTION = ("What to look for: real samples scatter around the BN point; BN-matched (ZeroQ) samples collapse "
           "onto it, and DSG's should spread like real data — inside the slack band, not on its centre.")


def pick_channel(diag) -> tuple[int, int]:
    """Layer and channel selectors (bound to the URL)."""
    t = diag.targets
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("BN layer", range(t.num_layers), index=0, key="layer", bind="query-params",
                         format_func=lambda i: f"{i}: {t.names[i]} ({t.channels[i]} channels)")
    channel = c2.number_input("Channel", 0, 4096, 0, key="channel", bind="query-params")
    return int(layer), min(int(channel), t.channels[layer] - 1)


def channel_means(diag, layer: int) -> dict[str, pd.DataFrame]:
    """Per-channel averages over samples of each set's per-sample mean and std (markers on the band)."""
    t = diag.targets
    off, c = dv.targets_offset(t, layer), t.channels[layer]
    return {name: pd.DataFrame({"channel": range(c), "mu": p.mean[:, off:off + c].mean(0).numpy(),
                                "sigma": p.std[:, off:off + c].mean(0).numpy()})
            for name, p in diag.probes.items()}


def render(result: RunResult | None) -> None:
    if not intro(CAPTION, result):
        return
    diag = result.diagnosis
    layer, channel = pick_channel(diag)
    d, g = float(diag.margins.delta[layer]), float(diag.margins.gamma[layer])
    bn = dv.bn_point(diag.targets, layer, channel)
    left, right = st.columns(2)
    scatter = dv.channel_scatter(diag.probes, diag.targets, layer, channel)
    left.plotly_chart(charts.channel_scatter(scatter, bn, (d, g)), key="scatter")
    values = {name: dv.channel_activations(diag.model, x, diag.targets, layer, channel)
              for name, x in diag.images.items()}
    right.plotly_chart(charts.activation_histogram(dv.activation_histogram(values, *bn)), key="histogram")
    st.caption(f"Slack at this layer: δ = {d:.3g} on means, γ = {g:.3g} on stds "
               f"(ε = {result.settings.eps:g}{'' if result.settings.sda else ', SDA off: band for reference'}).")
    st.plotly_chart(charts.layer_spread(dv.layer_spread_frame(diag.spreads(), diag.targets)), key="spread")
    st.caption("Below 1: the set's per-sample statistics vary less than real data's at that layer (homogenized).")
    band = dv.sda_band(diag.targets, layer, diag.margins.delta, diag.margins.gamma)
    st.plotly_chart(charts.sda_band(band, channel_means(diag, layer)), key="band")
