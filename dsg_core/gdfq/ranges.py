"""Quantizer ranges that follow the model while it trains (QAT with the straight-through estimator).

- Activations: every calibrated :class:`~dsg_core.quant.modules.ActQuantizer` tracks an exponential
  moving average of its input's range, lo <- beta * lo + (1 - beta) * lo_batch (and hi alike),
  beta = 0.9 in GDFQ. The batch range uses the same rule as the initial calibration
  (``minmax``: batch min/max; ``dsg-avg``: per-sample min/max averaged), so the EMA starts where
  calibration left off.
- Weights: the per-channel min/max grid is recomputed from the current float weights after every
  optimizer step (GDFQ recomputes it in every forward), so a weight that grows past its initial
  range is not clipped for good.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..quant.modules import ActQuantizer, act_quantizers, quant_layers
from ..quant.quantizer import weight_qparams

RANGE_RULES = ("minmax", "dsg-avg")


def batch_range(x: torch.Tensor, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) of one batch of activations under a calibration rule."""
    if rule == "minmax":
        return x.amin(), x.amax()
    flat = x.reshape(x.shape[0], -1)
    return flat.amin(1).mean(), flat.amax(1).mean()


class RangeEMA:
    """Context manager: while active, each forward pass moves activation ranges toward the batch's.

    >>> with RangeEMA(q_model, momentum=0.9, rule="minmax"):
    ...     loss = criterion(q_model(x))
    """

    def __init__(self, model: nn.Module, momentum: float, rule: str):
        if rule not in RANGE_RULES:
            raise ConfigError(f"range rule must be one of {', '.join(RANGE_RULES)}, not {rule!r}")
        self.quants = [q for q in act_quantizers(model).values() if q.bits < 32]
        self.momentum, self.rule, self._handles = momentum, rule, []

    def _hook(self, q: ActQuantizer, args) -> None:
        if not bool(q.calibrated):
            return
        lo, hi = batch_range(args[0].detach(), self.rule)
        b = self.momentum
        q.set_range(b * q.lo.item() + (1 - b) * lo.item(), b * q.hi.item() + (1 - b) * hi.item())

    def __enter__(self) -> "RangeEMA":
        self._handles = [q.register_forward_pre_hook(self._hook) for q in self.quants]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@torch.no_grad()
def refresh_weight_ranges(model: nn.Module) -> None:
    """Recompute every weight quantizer's scale / zero point from its layer's current weight."""
    for layer in quant_layers(model).values():
        wq = layer.wq
        scale, zero_point = weight_qparams(layer.weight, wq.bits, wq.per_channel, wq.symmetric)
        wq.scale.copy_(scale)
        wq.zero_point.copy_(zero_point)
