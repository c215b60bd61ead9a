"""Diagnose several sets against real data with one forward pass per set."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn as nn

from ..generation.margins import Margins, compute_margins
from ..generation.stats import BNTargets, bn_targets
from .metrics import diversity_metrics, spread_ratio
from .probe import Probe, probe

REAL = "Real"

# direction in which each metric is "better" (closer to real data); used to highlight tables
BETTER = {"mean_cosine_similarity": "low", "feature_cosine_similarity": "low", "effective_rank": "high",
          "feature_effective_rank": "high", "stat_spread_ratio": "one", "std_spread_ratio": "one",
          "frechet_distance": "low", "precision": "high", "recall": "high", "class_entropy": "high",
          "class_coverage": "high", "in_band_fraction": None, "mean_confidence": None}


@dataclass
class Diagnosis:
    model: nn.Module
    targets: BNTargets
    margins: Margins
    images: dict[str, torch.Tensor]
    probes: dict[str, Probe]

    def metrics(self) -> pd.DataFrame:
        """One row per set (real data included, as the reference), one column per metric."""
        real = self.probes[REAL]
        rows = {name: diversity_metrics(self.images[name], p, real, self.targets, self.margins.delta,
                                        self.margins.gamma) for name, p in self.probes.items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def spreads(self) -> dict[str, dict]:
        real = self.probes[REAL]
        return {name: spread_ratio(p, real, self.targets) for name, p in self.probes.items()}


def diagnose(model: nn.Module, sets: dict[str, torch.Tensor], real: torch.Tensor, input_shape: tuple[int, ...],
             margins: Margins | None = None, epsilon: float = 0.9) -> Diagnosis:
    """Probe every set and real data once. ``margins`` default to the epsilon-quantile rule."""
    device = next(model.parameters()).device
    targets = bn_targets(model, real[:2].to(device))
    if margins is None:
        margins = compute_margins(model, targets, input_shape, epsilon, device=device)
    images = {n: x.cpu() for n, x in {REAL: real, **sets}.items()}  # plot data: on the CPU, whatever the device
    return Diagnosis(model, targets, margins, images, {n: probe(model, x) for n, x in images.items()})
