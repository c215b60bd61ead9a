"""A 1-channel model seen as a 3-channel one, for peers that assume RGB input (bench/peers.py).

MCT's data generation hard-codes 3 input channels (its initialisation, input statistics, clip grid and
smoothing kernel), so it cannot optimize images for our 1-channel MNIST models directly. ``FirstChannel``
wraps the model: it takes the peer's 3-channel images in the peer's normalization, keeps channel 0
(a fixed 1x1 convolution with weights [1, 0, 0]) and re-normalizes it into the model's input space.
``to_model_space`` maps the images the peer returns the same way, so the model is calibrated on exactly
what it saw during generation. With the peer's normalization set to the model's own (what bench/peers.py
does), the map is the identity on channel 0 and the peer's clip grid is the model's valid range.

No peer code is imported here: the adapter is tested without MCT installed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def channel0_affine(peer_mean: Sequence[float], peer_std: Sequence[float], model_mean: float,
                    model_std: float) -> tuple[float, float]:
    """(scale, shift) with model_x = scale * peer_x + shift for channel 0. The peer's statistics are in
    0-255 pixel units (MCT's ``image_normalization_dict``), the model's in [0, 1] units (``ModelSpec``):
    both sides describe the same pixel p = peer_x * peer_std + peer_mean (in 0-255)."""
    scale = peer_std[0] / 255.0 / model_std
    shift = (peer_mean[0] / 255.0 - model_mean) / model_std
    return scale, shift


def peer_normalization(model_mean: float, model_std: float) -> list[list[float]]:
    """The model's own normalization in the peer's form: three equal channels in 0-255 units."""
    return [[model_mean * 255.0] * 3, [model_std * 255.0] * 3]


def to_model_space(images: torch.Tensor, scale: float, shift: float) -> torch.Tensor:
    """(N, 3, H, W) in the peer's normalization -> (N, 1, H, W) in the model's."""
    return images[:, :1] * scale + shift


class FirstChannel(nn.Module):
    """``model`` behind the 3-to-1 channel map: what the peer optimizes its images against. Plain
    tensor arithmetic, so torch.fx can trace it (MCT traces the model it is given)."""

    def __init__(self, model: nn.Module, scale: float, shift: float):
        super().__init__()
        self.model, self.scale, self.shift = model, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x[:, :1] * self.scale + self.shift)
