"""How far a set's pixels leave the model's valid input range (issue 21: diversity or pixel range?).

Images made from pixels in [0, 1] and normalized per channel lie in [(0 - mean) / std, (1 - mean) / std]
(``ModelSpec.valid_range``). Generated images are unbounded; min/max calibration on out-of-range pixels
sees activation ranges that real inputs never produce, so this is measured beside every diversity metric.
"""

from __future__ import annotations

import torch

from ..errors import DataError

ValidRange = tuple[tuple[float, ...], tuple[float, ...]]
# A pixel of exactly 0 or 1, normalized in float32, lands within an ulp or two of its bound: real
# images would count as out of range. Excursions up to this (normalized units) count as inside.
TOLERANCE = 1e-5


def excursion(images: torch.Tensor, valid_range: ValidRange) -> torch.Tensor:
    """(N, C, H, W) -> same shape: how far each pixel lies beyond its channel's bound, in normalized
    units (0 inside the range, or within TOLERANCE of it)."""
    lo, hi = bounds(images, valid_range)
    e = (lo - images).clamp_min(0) + (images - hi).clamp_min(0)
    return e.where(e > TOLERANCE, torch.zeros((), dtype=e.dtype, device=e.device))


def per_image(images: torch.Tensor, valid_range: ValidRange) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of each image's pixels outside the range, each image's largest excursion), each (N,)."""
    e = excursion(images, valid_range).flatten(1)
    return (e > 0).double().mean(1), e.amax(1).double()


def pixel_range_metrics(images: torch.Tensor, valid_range: ValidRange) -> dict[str, float]:
    """The set's fraction of pixels out of range, the largest excursion of any pixel, and the
    fraction of images with at least one pixel out."""
    frac, top = per_image(images, valid_range)
    return {"out_of_range_fraction": float(frac.mean()), "max_excursion": float(top.max()),
            "images_out_of_range": float((top > 0).double().mean())}


def clamp_to_range(images: torch.Tensor, valid_range: ValidRange) -> torch.Tensor:
    """A copy of ``images`` with every pixel clamped into the range (``pixel_range="clamp-after"``
    applied to a set already generated: it costs no generation)."""
    lo, hi = bounds(images, valid_range)
    return images.clamp(min=lo, max=hi)


def bounds(images: torch.Tensor, valid_range: ValidRange) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) shaped (1, C, 1, ...) to broadcast against ``images``."""
    if len(valid_range[0]) != images.shape[1]:
        raise DataError(f"the valid range has {len(valid_range[0])} channels, the images {images.shape[1]}")
    shape = (1, -1, *[1] * (images.dim() - 2))
    return tuple(torch.tensor(v, dtype=images.dtype, device=images.device).view(shape) for v in valid_range)
