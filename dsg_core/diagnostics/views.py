"""Plot-ready data for the homogenization pictures (paper Figs. 1-3), as pandas data frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..generation.stats import BNTargets
from .probe import Probe


def channel_scatter(probes: dict[str, Probe], targets: BNTargets, layer: int, channel: int) -> pd.DataFrame:
    """Per-sample (mean, std) of one channel of one layer, one row per sample and set (Fig. 2)."""
    col = targets_offset(targets, layer) + channel
    rows = [pd.DataFrame({"set": name, "mean": p.mean[:, col].numpy(), "std": p.std[:, col].numpy(),
                          "sample": np.arange(len(p.mean))}) for name, p in probes.items()]
    return pd.concat(rows, ignore_index=True)


def bn_point(targets: BNTargets, layer: int, channel: int) -> tuple[float, float]:
    col = targets_offset(targets, layer) + channel
    return float(targets.mu[col]), float(targets.sigma[col])


def targets_offset(targets: BNTargets, layer: int) -> int:
    if not 0 <= layer < targets.num_layers:
        raise IndexError(f"layer {layer} is outside 0..{targets.num_layers - 1}")
    return int(sum(targets.channels[:layer]))


@torch.no_grad()
def channel_activations(model: nn.Module, images: torch.Tensor, targets: BNTargets, layer: int, channel: int,
                        max_values: int = 50_000, seed: int = 0) -> np.ndarray:
    """All pre-BN activation values of one channel over a set (subsampled to ``max_values``) (Fig. 1)."""
    values: list[torch.Tensor] = []
    name = targets.names[layer]
    module = dict(model.named_modules())[name]
    handle = module.register_forward_pre_hook(lambda _m, a: values.append(a[0][:, channel].flatten().cpu()))
    try:
        device = next(model.parameters()).device
        for i in range(0, len(images), 256):
            model(images[i:i + 256].to(device))
    finally:
        handle.remove()
    v = torch.cat(values).numpy()
    if len(v) > max_values:
        v = np.random.default_rng(seed).choice(v, max_values, replace=False)
    return v


def activation_histogram(sets: dict[str, np.ndarray], mu: float, sigma: float, bins: int = 60) -> pd.DataFrame:
    """Density histograms of each set on shared bins, plus the BN Gaussian N(mu, sigma^2) on the bin centres."""
    lo = min(float(np.percentile(v, 0.5)) for v in sets.values())
    hi = max(float(np.percentile(v, 99.5)) for v in sets.values())
    lo, hi = min(lo, mu - 3 * sigma), max(hi, mu + 3 * sigma)
    edges = np.linspace(lo, hi, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    rows = [pd.DataFrame({"set": name, "x": centres, "density": np.histogram(v, edges, density=True)[0]})
            for name, v in sets.items()]
    gauss = np.exp(-0.5 * ((centres - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    rows.append(pd.DataFrame({"set": "BN Gaussian", "x": centres, "density": gauss}))
    return pd.concat(rows, ignore_index=True)


def sda_band(targets: BNTargets, layer: int, delta: torch.Tensor, gamma: torch.Tensor) -> pd.DataFrame:
    """Per-channel BN mean/std of one layer with the +-delta / +-gamma relaxation band (Fig. 3)."""
    off, c = targets_offset(targets, layer), targets.channels[layer]
    mu = targets.mu[off:off + c].cpu().numpy()
    sigma = targets.sigma[off:off + c].cpu().numpy()
    d, g = float(delta[layer]), float(gamma[layer])
    return pd.DataFrame({"channel": np.arange(c), "mu": mu, "mu_lo": mu - d, "mu_hi": mu + d,
                         "sigma": sigma, "sigma_lo": sigma - g, "sigma_hi": sigma + g})


def layer_spread_frame(spreads: dict[str, dict[str, np.ndarray]], targets: BNTargets) -> pd.DataFrame:
    """Long frame (set, layer, statistic, ratio) of per-layer spread ratios, for a line chart."""
    rows = []
    for name, s in spreads.items():
        for stat, ratio in s.items():
            rows.append(pd.DataFrame({"set": name, "layer": np.arange(len(ratio)), "layer_name": targets.names,
                                      "statistic": stat, "ratio": ratio}))
    return pd.concat(rows, ignore_index=True)
