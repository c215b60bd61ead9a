"""Batch-norm folding: merge an eval-mode BN into the convolution right before it.

    W' = W * gamma / sqrt(var + eps),   b' = (b - mean) * gamma / sqrt(var + eps) + beta

(Jacob et al. 2018, sec. 3.2). Off by default: the paper's tables quantize with BN kept separate.
A BN counts as "right after" a conv when both are children of the same module, registered one
after the other, with matching channel counts (true for ResNets, MobileNets, torchvision blocks);
:func:`fold_bn` is meant to be followed by an output check (see ``ptq.quantize_model``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` into ``conv`` in place (conv gains a bias if it had none)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    k = gamma / std
    conv.weight.mul_(k.view(-1, *([1] * (conv.weight.dim() - 1))))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
    new_bias = (bias - bn.running_mean) * k + beta
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))


def fold_bn(model: nn.Module, replace: Callable[[nn.BatchNorm2d], nn.Module] = lambda bn: nn.Identity(),
            ) -> dict[str, str]:
    """Fold every adjacent Conv2d -> BatchNorm2d pair in place; the BN becomes ``replace(bn)``
    (nn.Identity for quantization; generation keeps the BN's statistics in an identity module).

    Returns {conv name: folded BN name}, so evaluation can compare a folded conv with the BN output.
    """
    folded: dict[str, str] = {}
    for parent_name, parent in list(model.named_modules()):
        children = list(parent.named_children())
        for (cname, conv), (bname, bn) in zip(children, children[1:]):
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.num_features == conv.out_channels and bn.track_running_stats
                    and not getattr(bn, "folded", False)):
                fold_conv_bn(conv, bn)
                setattr(parent, bname, replace(bn))
                prefix = f"{parent_name}." if parent_name else ""
                folded[prefix + cname] = prefix + bname
    return folded
