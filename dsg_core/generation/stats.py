"""Per-sample BatchNorm-input statistics of every BN layer, from one forward pass.

Forward pre-hooks on each BN layer reduce its input to per-sample, per-channel sums of x and x^2
over (H, W) as the forward pass runs (so no activation is kept); :meth:`BNStats.collect`
concatenates the layers along channels into (B, C_total) tensors and turns the sums into mean and
std in one step for all layers, so that every loss is one vectorized expression.
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


class _Sums(torch.autograd.Function):
    """(sum x, sum x^2) over the spatial dims, with a one-expression backward.

    ``torch.var_mean`` over (H, W) runs a slow Welford kernel on CPU (as slow as the conv it follows,
    see docs/performance.md); two plain reductions and a fused backward cost a fraction of it. The
    reductions keep the input's memory format (no copy for channels-last activations). Raw sums, not
    means: the division and every other per-channel step happen once for all layers in
    :meth:`BNStats.collect`, instead of as a dozen small ops per layer.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        ctx.save_for_backward(x)  # the BN input: autograd keeps it for BN's backward anyway
        dims = tuple(range(2, x.dim()))
        # x.square().sum, not vector_norm: 5x slower over (H, W) on channels-last
        return x.sum(dims), x.square().sum(dims)

    @staticmethod
    def backward(ctx, g_sum: torch.Tensor, g_sq: torch.Tensor):
        (x,) = ctx.saved_tensors
        shape = (*g_sum.shape, *([1] * (x.dim() - 2)))
        return torch.addcmul(g_sum.view(shape), x, g_sq.view(shape), value=2.0)


def spatial_sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-sample, per-channel (sum x, sum x^2) over all but the first two dims, and their count."""
    if x.dim() == 2:  # BatchNorm1d on (B, C): a sample's statistic is its value
        return x, x.square(), 1
    s1, s2 = _Sums.apply(x)
    return s1, s2, math.prod(x.shape[2:])


def moments(s1: torch.Tensor, s2: torch.Tensor, inv_n) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, biased variance) from the sums of x and x^2 and 1/count (a number or per channel)."""
    mean = s1 * inv_n
    return mean, (s2 * inv_n - mean.square()).clamp_min(0)


def sample_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel (mean, biased variance) over all but the first two dims."""
    s1, s2, n = spatial_sums(x)
    return moments(s1, s2, 1.0 / n)


def sample_stats(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel (mean, sqrt(biased var + eps)) over all but the first two dims."""
    mean, var = sample_moments(x)
    return mean, (var + eps).sqrt()


class FoldedBatchNorm(nn.BatchNorm2d):
    """A BN whose affine map was folded into the conv before it (``fast_copy``): its forward pass is
    the identity, so its input is the BN *output* y, and :class:`BNStats` maps y's moments back to
    those of the BN input x = mu + (y - beta) * sigma / gamma with ``scale`` and ``shift``. Keeps the
    running statistics, so every BN lookup (targets, margins, names) sees it as the BN it replaces;
    saves BN's own forward and backward, 8-10% of a resnet20_mnist iteration on 2 cores
    (docs/performance.md)."""
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
        self._sums: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        self._counts: list[int] = [0] * len(self.layers)
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.inputs: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles: list = []

    def _hook(self, i: int):
        def hook(module, args):
            x = args[0]
            # float32 statistics under mixed precision too
            s1, s2, self._counts[i] = spatial_sums(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)
            self._sums[i] = (s1, s2)
            if self.keep_inputs:
                self.inputs[i] = module.input_of(x.detach()) if isinstance(module, FoldedBatchNorm) else x.detach()
        return hook

    def _per_channel(self, counts: tuple[int, ...], like: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1/n, scale, shift) per channel of all layers: a folded BN's seen moments map to its input's
        as mean_x = mean_y * scale + shift, var_x = var_y * scale^2 (identity for a plain BN).
        Built from ``num_features`` alone for plain BNs, which may keep no running statistics."""
        key = (counts, like.dtype, like.device)
        if key not in self._constants:
            inv_n, scale, shift = [], [], []
            for (_, m), n in zip(self.layers, counts):
                c, kw = m.num_features, dict(dtype=like.dtype, device=like.device)
                folded = isinstance(m, FoldedBatchNorm)
                inv_n.append(torch.full((c,), 1.0 / n, **kw))
                scale.append(m.scale.to(**kw) if folded else torch.ones(c, **kw))
                shift.append(m.shift.to(**kw) if folded else torch.zeros(c, **kw))
            self._constants[key] = (torch.cat(inv_n), torch.cat(scale), torch.cat(shift))
        return self._constants[key]

    def __enter__(self) -> "BNStats":
        self._handles = [m.register_forward_pre_hook(self._hook(i)) for i, (_, m) in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def collect(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of every hooked layer's input, each (B, C_total), in a few ops for all layers."""
        missing = [self.layers[i][0] for i, m in enumerate(self._sums) if m is None]
        if missing:
            raise ModelError(f"BN layers never ran in the forward pass: {', '.join(missing[:5])}")
        s1, s2 = (torch.cat(parts, dim=1) for parts in zip(*self._sums))
        inv_n, scale, shift = self._per_channel(tuple(self._counts), s1)
        mean_seen, var_seen = moments(s1, s2, inv_n)
        return torch.addcmul(shift, mean_seen, scale), (var_seen * scale.square() + self.eps).sqrt()
