"""Samples: the calibration images of every source side by side, with what the model sees in them."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from ..runner import RunResult
from . import intro

CAPTION = ("What to look for: ZeroQ samples tend to look alike (homogenized); DSG samples should vary more "
           "in shape and contrast. Each caption is the model's predicted class and its confidence.")


def to_pixels(images: torch.Tensor, mean, std) -> np.ndarray:
    """Model-input space -> (N, H, W[, 3]) floats in [0, 1] for st.image."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (images.cpu() * s + m).clamp(0, 1)
    return (x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)).numpy()


def render(result: RunResult | None, spec) -> None:
    if not intro(CAPTION, result):
        return
    c1, c2 = st.columns(2)
    by_class = c1.toggle("Group by predicted class", True, key="by_class", bind="query-params")
    limit = c2.slider("Images per set", 4, 64, 16, 4, key="show_n", bind="query-params")
    sets = result.first_seed_sets()
    cols = st.columns(len(sets))
    for col, (name, images) in zip(cols, sets.items()):
        probs = result.diagnosis.probes[name].probs
        conf, pred = probs.max(1)
        order = torch.argsort(pred * 2 - conf, stable=True) if by_class else torch.arange(len(pred))
        order = order[:limit]
        names = spec.class_names
        captions = [f"{names[int(pred[i])][:12]} · {conf[i]:.0%}" for i in order]
        with col:
            st.markdown(f"**{name}**")
            st.image(list(to_pixels(images[order], spec.mean, spec.std)), caption=captions, width=56, clamp=True)
