"""The activation ranges a calibration set gives under the min/max rule, relative to real data's.

Out-of-range pixels and unbounded statistics widen the per-tensor ranges a global min/max rule
calibrates, coarsening a low-bit grid (docs/ranges.md, docs/pixel-range.md). A ratio of 1 per layer
means the set calibrates that layer as real data does.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..quant import QuantConfig, act_quantizers, quantize_model


def activation_ranges(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """hi - lo of every activation quantizer after min/max calibration on ``images`` (as the W4A4
    min/max cell calibrates them: upstream weights at 4 bits), in the model's layer order (floored at 1e-8,
    so that a dead layer cannot make a log ratio infinite)."""
    q = quantize_model(model, images, QuantConfig(wbits=4, abits=4, quantizer="minmax"))
    return torch.tensor([float(a.hi - a.lo) for a in act_quantizers(q).values()]).clamp_min(1e-8)


def range_ratios(ranges: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """The set's ranges / real data's, summarized: geometric mean and largest over layers."""
    r = ranges / real
    return {"range_ratio": math.exp(float(r.log().mean())), "max_layer_ratio": float(r.max())}
