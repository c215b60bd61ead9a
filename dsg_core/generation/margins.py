"""SDA's slack margins from Gaussian noise (DSG sec. 3.1).

Feed N(0,1) images through the FP32 model once; for every BN layer i the gaps
|mu^g_i - mu_i| and |sigma^g_i - sigma_i| of their per-sample statistics are "natural" deviations
a real-looking input may have. delta_i / gamma_i = the epsilon-quantile of those gaps over all
sample x channel entries of layer i (one scalar per layer, as in the reference code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .stats import BNStats, BNTargets


@dataclass(frozen=True)
class Margins:
    delta: torch.Tensor  # (N,) slack on per-sample means, one per BN layer
    gamma: torch.Tensor  # (N,) slack on per-sample stds

    def per_channel(self, targets: BNTargets) -> tuple[torch.Tensor, torch.Tensor]:
        return self.delta[targets.layer_of], self.gamma[targets.layer_of]


def gaussian_gaps(model: nn.Module, targets: BNTargets, shape: tuple[int, ...], n: int,
                  seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(|mu^g - mu|, |sigma^g - sigma|) of n Gaussian images, each (n, C_total)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn((n, *shape), generator=gen).to(device)
    with torch.no_grad(), BNStats(model, targets.names) as st:
        model(noise)
        mean, std = st.collect()
    return (mean - targets.mu).abs(), (std - targets.sigma).abs()


def layer_quantile(gaps: torch.Tensor, targets: BNTargets, q: float) -> torch.Tensor:
    """q-quantile of each layer's (samples x channels) gaps -> (N,)."""
    return torch.stack([torch.quantile(g.flatten().float(), q) for g in targets.split(gaps)])


def compute_margins(model: nn.Module, targets: BNTargets, shape: tuple[int, ...], epsilon: float,
                    n: int = 128, seed: int = 0, device="cpu") -> Margins:
    gap_mu, gap_sigma = gaussian_gaps(model, targets, shape, n, seed, device)
    return Margins(layer_quantile(gap_mu, targets, epsilon), layer_quantile(gap_sigma, targets, epsilon))


def fixed_margins(targets: BNTargets, delta: float, gamma: float) -> Margins:
    n = targets.num_layers
    return Margins(targets.mu.new_full((n,), delta), targets.mu.new_full((n,), gamma))
