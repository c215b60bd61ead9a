"""Activation-range calibration: one forward pass of the calibration batch (paper sec. 4).

The pass runs with weights quantized and activations in FP32 (every activation quantizer only
observes its input), in chunks of ``batch_size`` images; then each quantizer gets its range.
(The ZeroQ/DSG code quantizes activations during that pass, so a range there also sees upstream
activation error; an FP32 pass keeps the ranges independent of chunking and of layer order.)
Range rules (all extended to contain 0 by ``qparams``):

- ``minmax``     global min / max over the whole batch (ZeroQ).
- ``dsg-avg``    min / max of each sample, averaged over the batch (the DSG reference code's default);
                 less sensitive to one outlier sample than ``minmax``.
- ``percentile`` the (100 - p)-th and p-th percentiles of all values (p = 99.99 by default).
- ``mse``        the min / max range shrunk by the ratio r in [0.2, 1] that minimizes the mean squared
                 quantization error of that activation (grid search, 81 ratios, error estimated on
                 at most 2^17 of its values).

``percentile`` and ``mse`` keep a seeded random subsample of at most ``max_values`` values per
quantizer (exact for small batches, e.g. 64 MNIST images at ResNet-20 sizes).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError
from .modules import ActQuantizer, act_quantizers
from .quantizer import fake_quant, qparams

CALIBRATORS = ("minmax", "dsg-avg", "percentile", "mse")


class Observer:
    """Accumulates what a range rule needs from the activations it is shown."""

    def update(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def range(self) -> tuple[float, float]:
        raise NotImplementedError


class MinMaxObserver(Observer):
    def __init__(self):
        self.lo, self.hi = math.inf, -math.inf

    def update(self, x: torch.Tensor) -> None:
        self.lo = min(self.lo, x.min().item())
        self.hi = max(self.hi, x.max().item())

    def range(self) -> tuple[float, float]:
        return self.lo, self.hi


class SampleAvgObserver(Observer):
    """Mean over samples of per-sample min / max (DSG reference code)."""

    def __init__(self):
        self.lo_sum, self.hi_sum, self.n = 0.0, 0.0, 0

    def update(self, x: torch.Tensor) -> None:
        flat = x.reshape(x.shape[0], -1)
        self.lo_sum += flat.min(1).values.sum().item()
        self.hi_sum += flat.max(1).values.sum().item()
        self.n += x.shape[0]

    def range(self) -> tuple[float, float]:
        return self.lo_sum / self.n, self.hi_sum / self.n


class _SampleObserver(Observer):
    """Keeps a seeded random subsample of values, in proportion to each chunk's share of the batch."""

    def __init__(self, n_images: int, max_values: int, seed: int):
        self.n_images, self.max_values = n_images, max_values
        self.gen = torch.Generator().manual_seed(seed)
        self.values: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(-1).float().cpu()
        keep = math.ceil(self.max_values * x.shape[0] / self.n_images)
        if flat.numel() > keep:
            flat = flat[torch.randperm(flat.numel(), generator=self.gen)[:keep]]
        self.values.append(flat)

    def all_values(self) -> torch.Tensor:
        return torch.cat(self.values)


class PercentileObserver(_SampleObserver):
    def __init__(self, n_images: int, max_values: int, seed: int, percentile: float):
        super().__init__(n_images, max_values, seed)
        self.percentile = percentile

    def range(self) -> tuple[float, float]:
        v = self.all_values()
        k_hi = max(1, min(v.numel(), math.ceil(v.numel() * self.percentile / 100)))
        k_lo = max(1, min(v.numel(), math.floor(v.numel() * (100 - self.percentile) / 100) + 1))
        return torch.kthvalue(v, k_lo).values.item(), torch.kthvalue(v, k_hi).values.item()


class MSEObserver(_SampleObserver):
    search_values = 2 ** 17

    def __init__(self, n_images: int, max_values: int, seed: int, bits: int, ratios: int = 81):
        super().__init__(n_images, max_values, seed)
        self.bits, self.ratios = bits, torch.linspace(0.2, 1.0, ratios)

    def range(self) -> tuple[float, float]:
        v = self.all_values()
        lo, hi = min(v.min().item(), 0.0), max(v.max().item(), 0.0)
        if v.numel() > self.search_values:  # the error estimate needs far fewer values than the range
            v = v[torch.randperm(v.numel(), generator=self.gen)[:self.search_values]]
        best, best_err = (lo, hi), math.inf
        for r in self.ratios.tolist():  # a search over candidate clip ratios, not over samples
            scale, zp = qparams(torch.tensor(lo * r), torch.tensor(hi * r), self.bits)
            err = (fake_quant(v, scale, zp, self.bits) - v).pow(2).mean().item()
            if err < best_err:
                best, best_err = (lo * r, hi * r), err
        return best


def make_observer(method: str, q: ActQuantizer, n_images: int, percentile: float,
                  max_values: int, seed: int) -> Observer:
    if method == "minmax":
        return MinMaxObserver()
    if method == "dsg-avg":
        return SampleAvgObserver()
    if method == "percentile":
        return PercentileObserver(n_images, max_values, seed, percentile)
    if method == "mse":
        return MSEObserver(n_images, max_values, seed, q.bits)
    raise ConfigError(f"unknown activation calibrator {method!r}; choose one of {', '.join(CALIBRATORS)}")


def check_images(images, model: nn.Module) -> torch.Tensor:
    """Calibration images as a float tensor that fits the model's first layer, or a clear DataError."""
    if not isinstance(images, torch.Tensor):
        raise DataError(f"calibration images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() < 2:
        raise DataError(f"calibration images must be a batch [N, ...], got shape {tuple(images.shape)}")
    if images.numel() == 0:
        raise DataError(f"the calibration set is empty (shape {tuple(images.shape)}): give at least one image")
    if not images.is_floating_point():
        raise DataError(f"calibration images must be floating point (normalized), got {images.dtype}")
    if not torch.isfinite(images).all():
        raise DataError("calibration images contain NaN or Inf values")
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d) and (images.dim() != 4 or images.shape[1] != first.in_channels):
        raise DataError(f"calibration images of shape {tuple(images.shape)} do not fit the model: "
                        f"expected [N, {first.in_channels}, H, W]")
    return images


@torch.no_grad()
def forward_checked(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)``, turning a shape mismatch inside the model into a DataError."""
    try:
        return model(images)
    except RuntimeError as exc:
        raise DataError(f"calibration images of shape {tuple(images.shape)} do not fit the model: "
                        f"{str(exc).splitlines()[0]}") from None


def run_batches(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Forward ``images`` in chunks of ``batch_size`` (only for the hooks' side effects)."""
    for i in range(0, images.shape[0], batch_size):
        forward_checked(model, images[i:i + batch_size])


def calibrate_activations(model: nn.Module, images: torch.Tensor, method: str = "dsg-avg",
                          percentile: float = 99.99, batch_size: int = 256,
                          max_values: int = 2 ** 20, seed: int = 0) -> list[str]:
    """Set the range of every activation quantizer of ``model`` in place; returns warnings."""
    images = check_images(images, model)
    if method not in CALIBRATORS:
        raise ConfigError(f"unknown activation calibrator {method!r}; choose one of {', '.join(CALIBRATORS)}")
    quants = {n: q for n, q in act_quantizers(model).items() if q.bits < 32}
    if not quants:
        return []
    observers = {n: make_observer(method, q, images.shape[0], percentile, max_values, seed + i)
                 for i, (n, q) in enumerate(quants.items())}
    calls = {n: 0 for n in quants}

    def hook_for(name: str):
        def hook(_module, args):
            observers[name].update(args[0].detach())
            calls[name] += 1
        return hook

    was_training = model.training
    model.eval()
    handles = [q.register_forward_pre_hook(hook_for(n)) for n, q in quants.items()]
    saved = {n: q.enabled for n, q in quants.items()}
    try:
        for q in quants.values():
            q.enabled = False
        run_batches(model, images, batch_size)
    finally:
        for h in handles:
            h.remove()
        for n, q in quants.items():
            q.enabled = saved[n]
        model.train(was_training)

    n_chunks = math.ceil(images.shape[0] / batch_size)
    warnings = []
    for name, q in quants.items():
        if calls[name] == 0:
            warnings.append(f"activation quantizer {name} was never reached by the forward pass: left FP32")
            continue
        if calls[name] > n_chunks:
            warnings.append(f"activation quantizer {name} runs {calls[name] // n_chunks}x per forward "
                            "(a shared activation module): one range covers all its uses")
        lo, hi = observers[name].range()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError(f"the activations at {name} overflow (range [{lo}, {hi}]) on these calibration "
                            "images: are they normalized like the model's training data?")
        q.set_range(lo, hi)
    return warnings
