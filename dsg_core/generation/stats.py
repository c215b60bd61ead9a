"""Per-sample BatchNorm-input statistics of every BN layer, from one forward pass.

Forward pre-hooks on each BN layer reduce its input to per-sample, per-channel mean and std over
(H, W) as the forward pass runs (so no activation is kept); :meth:`BNStats.collect` concatenates
the layers along channels into (B, C_total) tensors so that every loss is one vectorized expression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ModelError


@dataclass(frozen=True)
class BNTargets:
    """What the statistics are compared to: the running statistics, flattened over all layers."""
    names: list[str]
    mu: torch.Tensor          # (C_total,) running mean
    sigma: torch.Tensor       # (C_total,) sqrt(running_var + eps)
    layer_of: torch.Tensor    # (C_total,) index of the layer each channel belongs to
    channels: list[int]       # channels per layer

    @property
    def num_layers(self) -> int:
        return len(self.names)

    def split(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Split a (..., C_total) tensor back into one tensor per layer."""
        return list(t.split(self.channels, dim=-1))

    def per_layer(self, per_channel: torch.Tensor) -> torch.Tensor:
        """Sum a (B, C_total) per-channel loss into a (B, N) per-layer loss matrix."""
        out = per_channel.new_zeros(per_channel.shape[0], self.num_layers)
        return out.index_add_(1, self.layer_of, per_channel)


def bn_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ModelError("the model has no BatchNorm layers: DSG and ZeroQ synthesize data by matching the "
                         "running mean/variance stored in BN layers, so a model without BN gives them nothing "
                         "to match (use Gaussian noise or real data for such a model)")
    return layers


def active_bn_layers(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """BN layers that run in an eval-mode forward pass (e.g. Inception's aux head does not)."""
    layers, fired = bn_layers(model), set()
    handles = [m.register_forward_pre_hook(lambda mod, _a, n=n: fired.add(n)) for n, m in layers]
    try:
        with torch.no_grad():
            model(example[:2])
    finally:
        for h in handles:
            h.remove()
    return [(n, m) for n, m in layers if n in fired]


def bn_targets(model: nn.Module, example: torch.Tensor | None = None) -> BNTargets:
    """Running statistics of the BN layers; with ``example``, only of those that actually run."""
    layers = bn_layers(model) if example is None else active_bn_layers(model, example)
    for name, m in layers:
        if m.running_mean is None or m.running_var is None:
            raise ModelError(f"BN layer {name} tracks no running statistics (track_running_stats=False)")
    mu = torch.cat([m.running_mean.detach() for _, m in layers])
    sigma = torch.cat([(m.running_var.detach() + m.eps).sqrt() for _, m in layers])
    channels = [m.num_features for _, m in layers]
    layer_of = torch.repeat_interleave(torch.arange(len(layers), device=mu.device),
                                       torch.tensor(channels, device=mu.device))
    return BNTargets([n for n, _ in layers], mu, sigma, layer_of, channels)


class _Moments(torch.autograd.Function):
    """(E[x], E[x^2]) over the spatial dims, with a one-expression backward.

    ``torch.var_mean`` over (H, W) runs a slow Welford kernel on CPU (as slow as the conv it follows,
    see docs/performance.md); two plain reductions and a fused backward cost a fraction of it. The
    reductions keep the input's memory format (no copy for channels-last activations).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        ctx.save_for_backward(x)  # the BN input: autograd keeps it for BN's backward anyway
        dims = tuple(range(2, x.dim()))
        inv_n = 1.0 / math.prod(x.shape[2:])
        # x.square().sum, not vector_norm: 5x slower over (H, W) on channels-last
        return x.sum(dims).mul_(inv_n), x.square().sum(dims).mul_(inv_n)

    @staticmethod
    def backward(ctx, g_mean: torch.Tensor, g_sq: torch.Tensor):
        (x,) = ctx.saved_tensors
        inv_n = 1.0 / math.prod(x.shape[2:])
        shape = (*g_mean.shape, *([1] * (x.dim() - 2)))
        return torch.addcmul((g_mean * inv_n).view(shape), x, (g_sq * (2.0 * inv_n)).view(shape))


def sample_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel (mean, biased variance) over all but the first two dims."""
    if x.dim() == 2:  # BatchNorm1d on (B, C): a sample's statistic is its value
        return x, torch.zeros_like(x)
    mean, sq = _Moments.apply(x)
    return mean, (sq - mean.square()).clamp_min(0)


def sample_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel (mean, sqrt(biased var + eps)) over all but the first two dims."""
    mean, var = sample_moments(x)
    return mean, (var + eps).sqrt()


class FoldedBatchNorm(nn.BatchNorm2d):
    """A BN whose affine map was folded into the conv before it (``fast_copy``): its forward pass is
    the identity, so its input is the BN *output* y, and :meth:`input_moments` maps y's moments back
    to those of the BN input x = mu + (y - beta) * sigma / gamma. Keeps the running statistics, so
    every BN lookup (targets, margins, names) sees it as the BN it replaces; saves BN's own
    forward and backward, 8-10% of a resnet20_mnist iteration on 2 cores (docs/performance.md)."""
    folded = True

    def __init__(self, bn: nn.BatchNorm2d, copy_output: bool = False):
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=bn.running_mean.device, dtype=bn.running_mean.dtype)
        self.load_state_dict(bn.state_dict())
        self.eval()
        self.copy_output = copy_output  # for models that modify the BN output in place
        sigma = (self.running_var + self.eps).sqrt()
        gamma = self.weight.detach() if self.weight is not None else torch.ones_like(sigma)
        beta = self.bias.detach() if self.bias is not None else torch.zeros_like(sigma)
        self.register_buffer("scale", sigma / gamma, persistent=False)   # dx/dy
        self.register_buffer("shift", self.running_mean - beta * sigma / gamma, persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y.clone() if self.copy_output else y

    def input_moments(self, mean_y: torch.Tensor, var_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mean_y * self.scale + self.shift, var_y * self.scale.square()

    def input_of(self, y: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (y.dim() - 2)))
        return y * self.scale.view(shape) + self.shift.view(shape)


def sample_stats_reference(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward computation the fast path is tested against."""
    var, mean = torch.var_mean(x, dim=tuple(range(2, x.dim())), correction=0)
    return mean, (var + eps).sqrt()


class BNStats:
    """Context manager: hooks every BN layer; after a forward pass, ``collect()`` gives (mean, std).

    >>> with BNStats(model) as st:
    ...     logits = model(x)
    ...     mean, std = st.collect()        # each (B, C_total)
    """

    eps = 1e-5  # inside the square root of a sample's std, for a finite gradient at zero variance

    def __init__(self, model: nn.Module, names: list[str] | None = None, keep_inputs: bool = False):
        self.layers = bn_layers(model)
        if names is not None:
            modules = dict(self.layers)
            self.layers = [(n, modules[n]) for n in names]
        self.keep_inputs = keep_inputs
        self._means: list[torch.Tensor | None] = [None] * len(self.layers)
        self._stds: list[torch.Tensor | None] = [None] * len(self.layers)
        self.inputs: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list = []

    def _hook(self, i: int):
        def hook(module, args):
            x = args[0]
            mean, var = sample_moments(x.float())  # float32 statistics under mixed precision too
            if isinstance(module, FoldedBatchNorm):
                mean, var = module.input_moments(mean, var)
            self._means[i], self._stds[i] = mean, (var + self.eps).sqrt()
            if self.keep_inputs:
                self.inputs[i] = module.input_of(x.detach()) if isinstance(module, FoldedBatchNorm) else x.detach()
        return hook

    def __enter__(self) -> "BNStats":
        self._handles = [m.register_forward_pre_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def collect(self) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [self.layers[i][0] for i, m in enumerate(self._means) if m is None]
        if missing:
            raise ModelError(f"BN layers never ran in the forward pass: {', '.join(missing[:5])}")
        return torch.cat(self._means, dim=1), torch.cat(self._stds, dim=1)
