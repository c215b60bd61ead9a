"""Embedding: penultimate features of every set in one 2-D map."""

from __future__ import annotations

import streamlit as st

from dsg_core.diagnostics import embedding_frame

from .. import charts
from ..runner import RunResult
from . import intro

CAPTION = ("What to look for: homogenized sets form tight clumps; diverse sets spread over the map like "
           "real data does. Every set is embedded jointly, so positions are comparable.")
CAVEAT = ("t-SNE keeps neighbourhoods, not distances: cluster sizes and gaps between clusters in a t-SNE "
          "map mean little. PCA is linear and honest about distances, but shows only two directions.")


def render(result: RunResult | None) -> None:
    if not intro(CAPTION, result):
        return
    c1, c2 = st.columns(2)
    method = c1.radio("Method", ["pca", "tsne"], horizontal=True, key="emb", bind="query-params",
                      format_func=lambda m: {"pca": "PCA (instant)", "tsne": "t-SNE (seconds)"}[m])
    color = c2.radio("Colour by", ["set", "class"], horizontal=True, key="color", bind="query-params")
    probes = result.diagnosis.probes
    with st.spinner("Embedding…"):
        df = embedding_frame({n: p.features for n, p in probes.items()},
                             {n: p.logits.argmax(1) for n, p in probes.items()}, method=method)
    st.plotly_chart(charts.embedding(df, color), key="embedding")
    st.caption(CAVEAT)
