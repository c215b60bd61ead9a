"""A conv/linear layer's output reconstruction error, computed from second moments of its input.

Layer-wise AdaRound minimizes ||W_q X - Y||^2 over the rounding of W_q, where X holds the layer's
input columns (unfolded patches for a conv). The loss is quadratic in W, so it only needs
G = X X^T and C = X Y^T, accumulated once over all calibration images (the same statistic as
GPTQ's Hessian, Frantar et al. 2023). Each optimization step then costs one K x K matmul on the
whole calibration set instead of a conv forward/backward on a mini-batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .modules import QuantConv2d, QuantLinear


def gram_ok(layer: nn.Module) -> bool:
    """Whether :class:`GramLoss` can express this layer (zero-padded conv with numeric padding, or linear)."""
    if isinstance(layer, QuantLinear):
        return True
    return (isinstance(layer, QuantConv2d) and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str))


class GramLoss:
    """||W X - Y||^2 / P = (tr(W G W^T) - 2 tr(W C) + ||Y||^2) / P for a layer's weight W.

    Equals the direct loss (squared error summed over channels, mean over samples and positions)
    for the calibration inputs and targets given. Y excludes the layer's bias; X includes the layer's
    own input quantizer. Grouped convs (depthwise) get one [K_g x K_g] block per group.
    """

    def __init__(self, layer: nn.Module, x_in: torch.Tensor, target: torch.Tensor, chunk: int = 256):
        self.groups = layer.groups if isinstance(layer, QuantConv2d) else 1
        self.G = self.C = None
        self.yy, self.P = 0.0, 0
        with torch.no_grad():
            for i in range(0, x_in.shape[0], chunk):
                X, Y = self._columns(layer, x_in[i:i + chunk], target[i:i + chunk])
                G, C = X @ X.transpose(1, 2), X @ Y.transpose(1, 2)
                self.G = G if self.G is None else self.G + G
                self.C = C if self.C is None else self.C + C
                self.yy += Y.double().pow(2).sum().item()
                self.P += X.shape[2]
        self.Ct = self.C.transpose(1, 2).contiguous()   # [g, Cout_g, K_g]

    def _columns(self, layer: nn.Module, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input columns X [g, K_g, p] and bias-free targets Y [g, Cout_g, p]."""
        x = layer._input(x)  # the layer's own input quantizer, if any
        if isinstance(layer, QuantLinear):
            y = y - layer.bias if layer.bias is not None else y
            return x.reshape(-1, x.shape[-1]).T[None], y.reshape(-1, y.shape[-1]).T[None]
        g = self.groups
        y = y - layer.bias.view(1, -1, 1, 1) if layer.bias is not None else y
        X = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # [n, Cin*kh*kw, L]
        n, _, L = X.shape
        X = X.view(n, g, -1, L).permute(1, 2, 0, 3).reshape(g, -1, n * L)
        Y = y.reshape(n, g, -1, L).permute(1, 2, 0, 3).reshape(g, -1, n * L)
        return X, Y

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        W = w.reshape(self.groups, -1, self.G.shape[1])                     # [g, Cout_g, K_g]
        return (((W @ self.G) - 2 * self.Ct) * W).sum().add(self.yy) / self.P
