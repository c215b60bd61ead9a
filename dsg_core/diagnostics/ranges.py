"""The activation ranges a calibration set gives under the min/max rule, relative to real data's.

Out-of-range pixels and unbounded statistics widen the per-tensor ranges a global min/max rule
calibrates, coarsening a low-bit grid (docs/ranges.md, docs/pixel-range.md). A ratio of 1 per layer
means the set calibrates that layer as real data does.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn as nn

from ..quant import QuantConfig, act_quantizers, quantize_model


def named_activation_ranges(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """{activation quantizer: hi - lo} after min/max calibration on ``images`` (as the W4A4 min/max
    cell calibrates them: upstream weights at 4 bits), in the model's layer order."""
    q = quantize_model(model, images, QuantConfig(wbits=4, abits=4, quantizer="minmax"))
    return {name: float(a.hi - a.lo) for name, a in act_quantizers(q).items()}


def activation_ranges(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The ranges of ``named_activation_ranges`` as one tensor, floored at 1e-8 (so that a dead layer
    cannot make a log ratio infinite)."""
    return torch.tensor(list(named_activation_ranges(model, images).values())).clamp_min(1e-8)


def range_ratios(ranges: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """The set's ranges / real data's, summarized: geometric mean and largest over layers."""
    r = ranges / real
    return {"range_ratio": math.exp(float(r.log().mean())), "max_layer_ratio": float(r.max())}


def layer_range_frame(model: nn.Module, sets: dict[str, torch.Tensor], real: torch.Tensor) -> pd.DataFrame:
    """Long frame (set, layer, layer_name, range, ratio): each set's min/max range per layer and its
    ratio to real data's, for a per-layer chart."""
    ref = named_activation_ranges(model, real)
    names = list(ref)
    base = torch.tensor(list(ref.values())).clamp_min(1e-8)
    parts = []
    for set_name, images in sets.items():
        r = activation_ranges(model, images)
        parts.append(pd.DataFrame({"set": set_name, "layer": range(len(names)), "layer_name": names,
                                   "range": r.numpy(), "ratio": (r / base).numpy()}))
    return pd.concat(parts, ignore_index=True)
