"""Diagnose several sets against real data with one forward pass per set."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn as nn

from ..errors import ConfigError
from ..generation.margins import Margins, compute_margins
from ..generation.stats import BNTargets, bn_targets
from .metrics import diversity_metrics, spread_ratio
from .pixels import ValidRange, per_image, pixel_range_metrics
from .probe import Probe, probe

REAL = "Real"

# direction in which each metric is "better" (closer to real data); used to highlight tables
BETTER = {"mean_cosine_similarity": "low", "feature_cosine_similarity": "low", "effective_rank": "high",
          "feature_effective_rank": "high", "stat_spread_ratio": "one", "std_spread_ratio": "one",
          "frechet_distance": "low", "precision": "high", "recall": "high", "class_entropy": "high",
          "class_coverage": "high", "in_band_fraction": None, "mean_confidence": None,
          "out_of_range_fraction": "low", "max_excursion": "low", "images_out_of_range": "low"}


@dataclass
class Diagnosis:
    model: nn.Module
    targets: BNTargets
    margins: Margins
    images: dict[str, torch.Tensor]
    probes: dict[str, Probe]
    valid_range: ValidRange | None = None  # the model's valid input range: adds the pixel-range columns

    def metrics(self) -> pd.DataFrame:
        """One row per set (real data included, as the reference), one column per metric."""
        real = self.probes[REAL]
        rows = {name: diversity_metrics(self.images[name], p, real, self.targets, self.margins.delta,
                                        self.margins.gamma) for name, p in self.probes.items()}
        if self.valid_range is not None:
            for name, row in rows.items():
                row.update(pixel_range_metrics(self.images[name], self.valid_range))
        return pd.DataFrame.from_dict(rows, orient="index")

    def pixel_excursions(self) -> pd.DataFrame:
        """One row per image of every set: the fraction of its pixels outside the valid range and its
        largest excursion beyond the bound (normalized units)."""
        if self.valid_range is None:
            raise ConfigError("pixel excursions need the model's valid input range")
        parts = []
        for name, x in self.images.items():
            frac, top = per_image(x, self.valid_range)
            parts.append(pd.DataFrame({"set": name, "image": range(len(x)), "out_of_range_fraction": frac.numpy(),
                                       "max_excursion": top.numpy()}))
        return pd.concat(parts, ignore_index=True)

    def spreads(self) -> dict[str, dict]:
        real = self.probes[REAL]
        return {name: spread_ratio(p, real, self.targets) for name, p in self.probes.items()}


def diagnose(model: nn.Module, sets: dict[str, torch.Tensor], real: torch.Tensor, input_shape: tuple[int, ...],
             margins: Margins | None = None, epsilon: float = 0.9, valid_range: ValidRange | None = None) -> Diagnosis:
    """Probe every set and real data once. ``margins`` default to the epsilon-quantile rule;
    ``valid_range`` (``ModelSpec.valid_range``) adds how far each set's pixels leave it."""
    device = next(model.parameters()).device
    targets = bn_targets(model, real[:2].to(device))
    if margins is None:
        margins = compute_margins(model, targets, input_shape, epsilon, device=device)
    images = {n: x.cpu() for n, x in {REAL: real, **sets}.items()}  # plot data: on the CPU, whatever the device
    return Diagnosis(model, targets, margins, images, {n: probe(model, x) for n, x in images.items()},
                     valid_range)
