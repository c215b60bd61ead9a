"""The sample generator: optimize a batch of images so the frozen model's BN statistics fit.

One loop serves every method; the config switches the parts on and off (see ``config.py``).
Everything that does not change between iterations (BN targets, margins, the LSE matrix, the
Gaussian reference spectrum) is computed once in :class:`Objective`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, NumericalError
from ..models.fold import fold_bn
from ..progress import CancelFn, Progress, ProgressFn, check_cancel
from ..resources import check_generation_fits, retain_freed_memory
from . import losses
from .config import GenerationConfig
from .margins import Margins, compute_margins, fixed_margins
from .optim import ImageAdam, make_schedule
from .stats import BNStats, BNTargets, FoldedBatchNorm, bn_targets
from .synthetic_set import SyntheticSet


@dataclass
class Objective:
    """The loss of one config on one model, with its constant parts precomputed."""
    cfg: GenerationConfig
    targets: BNTargets
    margins: Margins | None
    num_classes: int | None

    @classmethod
    def build(cls, model: nn.Module, shape: tuple[int, ...], cfg: GenerationConfig, device,
              num_classes: int | None = None) -> "Objective":
        example = torch.zeros((2, *shape), device=device)
        targets = bn_targets(model, example)
        margins = None
        if cfg.components.sda:
            margins = (fixed_margins(targets, cfg.delta, cfg.gamma) if cfg.delta is not None else
                       compute_margins(model, targets, shape, cfg.epsilon, cfg.margin_samples, cfg.seed, device))
        if cfg.ce_weight and not num_classes:
            raise ConfigError("the CE prior needs the number of classes of the model")
        return cls(cfg, targets, margins, num_classes)

    def __post_init__(self):
        self._margin_c = self.margins.per_channel(self.targets) if self.margins else None
        self._lse: dict[int, torch.Tensor] = {}
        self._spectrum: dict[tuple, torch.Tensor] = {}

    def lse_matrix(self, batch: int) -> torch.Tensor | None:
        if not self.cfg.components.lse:
            return None
        if batch not in self._lse:
            weights = losses.lse_reference_weights if self.cfg.lse_mode == "reference" else losses.lse_weights
            self._lse[batch] = weights(batch, self.targets.num_layers, self.cfg.lse_weight, self.targets.mu.device)
        return self._lse[batch]

    def spectrum(self, shape: tuple[int, ...]) -> torch.Tensor:
        if shape not in self._spectrum:
            self._spectrum[shape] = losses.reference_spectrum(shape, device=self.targets.mu.device)
        return self._spectrum[shape]

    def layer_loss(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """L[j, i]: SDA hinge when SDA is on, else ZeroQ's L2 -> (B, N)."""
        if self._margin_c is not None:
            return losses.sda(mean, std, self.targets, *self._margin_c)
        return losses.bn_l2(mean, std, self.targets)

    def __call__(self, images: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 labels: torch.Tensor | None, priors: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(total loss, named parts, per-layer loss (N,) averaged over samples). ``priors``: the
        images TV and L2 see (the jittered copy under ``jitter_target="priors"``), else ``images``."""
        cfg, b = self.cfg, images.shape[0]
        layer = self.layer_loss(mean, std)
        parts = {"bn": losses.weighted_mean(layer, self.lse_matrix(b))}
        if cfg.input_prior:
            parts["input"] = losses.input_prior(images)
        if cfg.components.sci and cfg.sci_weight and b > 1:
            parts["sci"] = cfg.sci_weight * losses.sci(images, self.spectrum(tuple(images.shape)),
                                                      self.targets.num_layers)
        if cfg.ce_weight and labels is not None:
            parts["ce"] = cfg.ce_weight * F.cross_entropy(logits, labels)
        seen = images if priors is None else priors
        if cfg.tv_weight:
            parts["tv"] = cfg.tv_weight * losses.TV_FORMS[cfg.tv_form](seen)
        if cfg.l2_weight:
            parts["l2"] = cfg.l2_weight * losses.L2_FORMS[cfg.l2_form](seen)
        return sum(parts.values()), parts, layer.detach().mean(0)


def fast_copy(model: nn.Module, shape: tuple[int, ...], device) -> nn.Module:
    """A frozen copy of the model that computes the same function faster: BN folded into the conv
    before it and, for images on the CPU, channels-last memory (1.6x faster forward+backward for
    resnet20_mnist on 2 cores; docs/performance.md). Each fold is checked to give the same logits,
    statistics and gradient; a model that changes a BN output in place (``out += identity`` in
    torchvision's ResNets) gets folded BNs that copy their output, and one that still fails the
    check is not folded. The caller's model is left as it is."""
    ref = _on_cpu(model)  # folds are built and checked on the CPU: a GPU's TF32 would blur the check
    for fold in ("fold", "fold-copy", None):
        fast = _copy(ref, fold)
        if fold is None or _same_function(ref, fast, shape):
            return _place(fast, shape, device)
    raise AssertionError("unreachable")


def _on_cpu(model: nn.Module) -> nn.Module:
    """The model itself when it is on the CPU, else a CPU copy of it."""
    param = next(model.parameters(), None)
    return model if param is None or param.device.type == "cpu" else copy.deepcopy(model).cpu()


def _copy(model: nn.Module, fold: str | None) -> nn.Module:
    fast = copy.deepcopy(model).requires_grad_(False)
    if fold:
        fold_bn(fast, replace=lambda bn: FoldedBatchNorm(bn, copy_output=fold == "fold-copy"))
        for m in fast.modules():  # nn.ReLU(inplace=True) after a folded BN would overwrite the saved conv output
            if getattr(m, "inplace", False) is True:
                m.inplace = False
    return fast


def _place(fast: nn.Module, shape: tuple[int, ...], device) -> nn.Module:
    fast = fast.to(device)
    if len(shape) == 3 and torch.device(device).type == "cpu":
        fast = fast.to(memory_format=torch.channels_last)
    return fast


def _same_function(model: nn.Module, fast: nn.Module, shape: tuple[int, ...]) -> bool:
    """Logits, BN-input statistics and the gradient to the input agree on a random batch. A fold of a
    BN that does not follow its conv in the forward pass, one whose tiny gamma amplifies rounding, or
    one followed by an in-place op that overwrites the statistics' saved input (``F.relu(x,
    inplace=True)``) fails this, and the copy is not folded. Both models are on the CPU."""
    x = torch.randn((4, *shape), generator=torch.Generator().manual_seed(0))
    outs = []
    for m in (model, fast):
        xi = x.clone().requires_grad_(True)
        try:
            with BNStats(m) as st:
                logits = m(xi)
                mean, std = st.collect()
            (g,) = torch.autograd.grad(logits.sum() + mean.sum() + std.sum(), xi)
        except RuntimeError:
            return False
        outs.append((logits.detach(), mean.detach(), std.detach(), g))
    if not all(torch.isfinite(t).all() for t in outs[0]):
        return False  # nothing to compare: the generator reports the NaN itself
    return all(torch.allclose(a, b, rtol=1e-3, atol=1e-3 * (a.abs().max().item() + 1e-6))
               for a, b in zip(*outs))


def initial_images(n: int, shape: tuple[int, ...], cfg: GenerationConfig, batch_index: int) -> torch.Tensor:
    """Seeded per batch, so batch k is the same whichever process or run generates it. ``zeroq`` is
    ZeroQ's code's start: integers uniform in [0, 255) minus 127.5, over 5418.75 (std about 0.014)."""
    gen = torch.Generator().manual_seed(batch_seed(cfg.seed, batch_index))
    if cfg.start == "uniform":
        return torch.rand((n, *shape), generator=gen)
    if cfg.start == "zeroq":
        return (torch.randint(0, 255, (n, *shape), generator=gen).float() - 127.5) / 5418.75
    return torch.randn((n, *shape), generator=gen)


class PixelRange:
    """The valid input range per channel, applied as ``cfg.pixel_range`` says (see config.py)."""

    def __init__(self, mode: str, valid_range: tuple[tuple[float, ...], tuple[float, ...]] | None, device):
        if mode != "free" and valid_range is None:
            raise ConfigError(f"pixel range {mode!r} needs the model's input normalization (its valid range)")
        self.mode = mode
        if valid_range is not None:
            lo, hi = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1) for v in valid_range)
            self.lo, self.hi = lo, hi

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp ``x`` onto the range (in place; keeps x a leaf): the projection step of ``clip``."""
        with torch.no_grad():
            return x.clamp_(min=self.lo, max=self.hi)

    def each_step(self, x: torch.Tensor) -> None:
        if self.mode == "clip":
            self.project(x)

    def at_end(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x) if self.mode != "free" else x


def batch_seed(seed: int, batch_index: int) -> int:
    return (seed * 1_000_003 + batch_index * 7919) % (2**63 - 1)


def batch_labels(n: int, cfg: GenerationConfig, num_classes: int | None, batch_index: int) -> torch.Tensor | None:
    """Target labels: the chosen ones cycled, else a balanced, shuffled draw of every class."""
    if not num_classes:
        return None
    if cfg.targets:
        bad = [t for t in cfg.targets if not 0 <= t < num_classes]
        if bad:
            raise ConfigError(f"target labels {bad} are outside 0..{num_classes - 1}")
        return torch.tensor(cfg.targets).repeat(math.ceil(n / len(cfg.targets)))[:n]
    gen = torch.Generator().manual_seed(batch_seed(cfg.seed, batch_index) + 1)
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]


def batches(samples: int, batch_size: int) -> list[tuple[int, int]]:
    """(batch index, size) of every batch; the last one may be smaller."""
    return [(k, min(batch_size, samples - s)) for k, s in enumerate(range(0, samples, batch_size))]


def generate(model: nn.Module, input_shape: tuple[int, ...], cfg: GenerationConfig, *, model_name: str = "",
             num_classes: int | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
             device: str | torch.device = "cpu", batch_indices: list[int] | None = None,
             precision: str = "fp32",
             valid_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
             snapshot_every: int = 0) -> SyntheticSet:
    """Generate ``cfg.samples`` images for ``model`` (eval mode, frozen).

    ``batch_indices`` selects a subset of the batches (used to split work across processes).
    ``precision="bf16"`` runs the model's convolutions under autocast (mixed precision, for GPUs);
    the images, BN statistics, losses and optimizer stay in float32.
    ``valid_range``: (low, high) per channel of model inputs (``ModelSpec.valid_range``), needed
    when ``cfg.pixel_range`` is not "free".
    ``snapshot_every=k``: every k iterations (and the first and last) the progress record of the first
    batch carries ``extra["snapshot"]`` — its images and per-sample statistics, on the CPU — so a
    caller can replay the optimization (the dashboard's "watch it happen").
    Raises NumericalError (with the last finite images) on NaN/Inf and Cancelled on ``cancel()``.
    """
    cfg = cfg.validate()
    check_precision(precision)
    model = model.eval()
    t0 = time.perf_counter()
    shape = tuple(input_shape)
    plan = batches(cfg.samples, cfg.batch_size)
    if batch_indices is not None:
        plan = [plan[k] for k in batch_indices]
    want_labels = bool(cfg.ce_weight or cfg.targets)
    pixels = PixelRange(cfg.pixel_range, valid_range, "cpu")
    if not cfg.uses_bn:
        imgs = [pixels.at_end(initial_images(n, shape, cfg, k)) for k, n in plan]
        labels = [batch_labels(n, cfg, num_classes, k) for k, n in plan] if want_labels else []
        return _result(imgs, labels, cfg, model_name, None, [], t0)
    check_generation_fits(model, shape, max((n for _, n in plan), default=1), device)  # a rank may get none
    retain_freed_memory()
    model = fast_copy(model, shape, device)
    objective = Objective.build(model, shape, cfg, device, num_classes)
    pixels = PixelRange(cfg.pixel_range, valid_range, device)
    labels_out = []
    with BNStats(model, objective.targets.names) as stats:
        loop = _Loop(forward_fn(model, device, precision), stats, objective, cfg, pixels, progress, cancel,
                     total=len(plan) * cfg.iterations, snapshot_every=snapshot_every)
        for b, (k, n) in enumerate(plan):
            labels = batch_labels(n, cfg, num_classes, k) if want_labels else None
            x = _optimize(loop, initial_images(n, shape, cfg, k).to(device),
                          labels.to(device) if labels is not None else None, batch_index=k, offset=b * cfg.iterations)
            loop.done.append(pixels.at_end(x))
            if labels is not None:
                labels_out.append(labels)
    return _result(loop.done, labels_out, cfg, model_name, objective.margins, loop.history, t0)


@dataclass
class _Loop:
    """What every batch of one ``generate`` call shares: the model's forward, its statistics, the
    objective, the pixel range, the callbacks, and what is made so far (finished batches, history)."""
    forward: Callable[[torch.Tensor], torch.Tensor]
    stats: BNStats
    objective: Objective
    cfg: GenerationConfig
    pixels: PixelRange
    progress: ProgressFn
    cancel: CancelFn
    total: int                     # iterations over every batch of this process, for progress
    snapshot_every: int = 0        # snapshots of the first batch only
    done: list = field(default_factory=list)
    history: list = field(default_factory=list)


def _optimize(loop: _Loop, x: torch.Tensor, labels: torch.Tensor | None, *, batch_index: int,
              offset: int) -> torch.Tensor:
    """Optimize one batch. ``offset`` counts this process's iterations before it, for progress; the
    jitter stream is seeded by the global batch index, so results do not depend on the split."""
    forward, stats, objective, cfg, pixels = loop.forward, loop.stats, loop.objective, loop.cfg, loop.pixels
    done, history, progress, cancel, total = loop.done, loop.history, loop.progress, loop.cancel, loop.total
    snapshot_every = loop.snapshot_every if not done else 0
    if x.dim() == 4 and x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    pixels.each_step(x)  # clip starts inside the range
    x.requires_grad_(True)
    opt = ImageAdam(x, cfg.lr)
    sched = make_schedule(opt, cfg.schedule, cfg.iterations, cfg.plateau_patience, cfg.lr_floor)
    gen = torch.Generator().manual_seed(batch_seed(cfg.seed, batch_index) + 2)
    for t in range(cfg.iterations):
        check_cancel(cancel, partial=done + [x.detach().clone()])
        images_before = x.detach().clone() if snapshot_every else None
        model_input, prior_input = jittered(x, cfg, gen)
        logits = forward(model_input)
        mean, std = stats.collect()
        loss, parts, layer = objective(x, logits, mean, std, labels, prior_input)
        x.grad = None
        loss.backward(inputs=[x])
        if not (torch.isfinite(loss) and torch.isfinite(x.grad).all()):
            raise NumericalError(f"the loss became {loss.item()} at iteration {offset + t + 1}: stopped, "
                                 "the images before that step are kept (lower the learning rate or a weight)",
                                 iteration=offset + t + 1, last_good=torch.cat(done + [x.detach().clone()]))
        opt.step()
        pixels.each_step(x)
        value = loss.item()
        if sched is not None:
            sched.step(value)
        record = {"batch": batch_index, "iteration": t + 1, "loss": value, **{k: v.item() for k, v in parts.items()}}
        history.append(record)
        if progress is not None:
            extra = {"layer_loss": layer.tolist(), "lr": opt.lr}
            if snapshot_every and (t % snapshot_every == 0 or t == cfg.iterations - 1):
                extra["snapshot"] = {"iteration": t, "images": images_before.cpu(), "mean": mean.detach().cpu(),
                                     "std": std.detach().cpu()}
            progress(Progress("generate", offset + t + 1, total, value, {k: record[k] for k in parts}, extra))
    return x.detach().contiguous()


def jittered(x: torch.Tensor, cfg: GenerationConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(what the model sees, what TV and L2 see): the jittered copy goes where ``cfg.jitter_target``
    says, the other gets ``x`` itself. One draw from ``gen`` per call when jitter is on."""
    moved = losses.jitter(x, cfg.jitter, gen)
    return (x, moved) if cfg.jitter_target == "priors" else (moved, x)


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r} (float16 is left "
                          "out: its gradients to the images underflow without loss scaling)")


def forward_fn(model: nn.Module, device, precision: str):
    """The model's forward pass, under bfloat16 autocast for ``precision="bf16"`` (mixed precision).
    Only bfloat16: it has float32's range, so gradients to the images cannot underflow the way
    float16's would without loss scaling. BN statistics are taken in float32 (``BNStats``), logits
    are cast back, and the losses and optimizer stay float32. CPUs without native bf16 run it slower."""
    device_type, on = torch.device(device).type, precision == "bf16"

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=on):
            return model(x).float()
    return forward


def _result(imgs, labels, cfg: GenerationConfig, model_name: str, margins: Margins | None, history, t0) -> SyntheticSet:
    return SyntheticSet(
        images=torch.cat(imgs).cpu(), model=model_name, config=cfg.to_dict(),
        targets=torch.cat(labels).cpu() if labels else None,
        delta=margins.delta.cpu() if margins else None, gamma=margins.gamma.cpu() if margins else None,
        history=history, seconds=round(time.perf_counter() - t0, 3))
