"""One forward pass that records everything the diagnostics need.

Per-sample BN-input statistics of every layer (via ``BNStats``), penultimate features (the input of
the last Linear layer) and logits, batched over the set. Every metric and plot reads a
:class:`Probe`, so a set is pushed through the model once, whatever is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ModelError
from ..generation.stats import BNStats, bn_targets


@dataclass(frozen=True)
class Probe:
    mean: torch.Tensor      # (N, C_total) per-sample BN-input means, all layers
    std: torch.Tensor       # (N, C_total) per-sample BN-input stds
    features: torch.Tensor  # (N, D) penultimate features
    logits: torch.Tensor    # (N, K)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(1)


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError("the model has no Linear classifier layer, so it has no penultimate features")
    return linears[-1]


@torch.no_grad()
def probe(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> Probe:
    model = model.eval()
    device = next(model.parameters()).device
    names = bn_targets(model, images[:2].to(device)).names
    feats: list[torch.Tensor] = []
    handle = last_linear(model).register_forward_pre_hook(lambda _m, a: feats.append(a[0].flatten(1)))
    means, stds, logits = [], [], []
    try:
        with BNStats(model, names) as st:
            for i in range(0, len(images), batch_size):
                logits.append(model(images[i:i + batch_size].to(device)).cpu())
                m, s = st.collect()
                means.append(m.cpu())
                stds.append(s.cpu())
    finally:
        handle.remove()
    return Probe(torch.cat(means), torch.cat(stds), torch.cat(feats).cpu(), torch.cat(logits))
