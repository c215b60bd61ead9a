"""AdaRound (Nagel et al. 2020): learn whether each weight rounds down or up.

Each weight w of a quantized layer becomes s * (floor(w / s) + h(V) - z), with the rectified
sigmoid h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1) (AdaRound eq. 23, zeta=1.1,
gamma=-0.1). V starts where h(V) equals the fractional part of w / s (so the soft weight starts at
the FP32 weight) and is trained with Adam to reconstruct a unit's FP32 output:

    loss = || f_q(x_q) - f_fp(x_fp) ||^2 + lambda * sum(1 - |2 h(V) - 1|^beta)      (AdaRound eq. 25)

with the regularizer off for the first ``warmup`` fraction of iterations and beta annealed
linearly from 20 to 2 afterwards, pushing h(V) to 0 or 1. The reconstruction error is summed over
channels and averaged over samples and positions (as in BRECQ's reference loss). At the end the
rounding is hardened (h >= 0.5 rounds up) and baked into the layer's weight, which the layer's
nearest-rounding quantizer then reproduces exactly.

Inputs (design choice): x_q is the unit's input in the *quantized* model, with activation
quantizers calibrated and every earlier unit already rounded, so later units learn to compensate
upstream error ("asymmetric" reconstruction, AdaRound sec. 5); the target is the FP32 model's
output of the same unit on the same calibration images. The same loop reconstructs single layers
(AdaRound, this module) and blocks (BRECQ, ``brecq.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import Cancelled, ModelError, NumericalError
from ..progress import CancelFn, Progress, ProgressFn, check_cancel
from .gram import GramLoss, gram_ok
from .modules import QUANT_LAYERS, WeightQuantizer, quant_layers
from .quantizer import qmax

ZETA, GAMMA = 1.1, -0.1


@dataclass
class ReconConfig:
    iters: int = 200           # Adam steps per unit (the papers use 20k; 200 suffice on MNIST nets)
    batch_size: int = 16       # calibration images per step (block units; layers use all, see gram.py)
    lr: float = 1e-2           # Adam on V; higher than AdaRound's 1e-3 because of the short schedule
    reg_weight: float = 0.01   # lambda
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2        # fraction of iterations without the rounding regularizer
    chunk: int = 256           # images per forward when collecting inputs / targets
    seed: int = 0
    progress_every: int = 10   # progress callback every n steps (and at the last step of a unit)


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V), AdaRound eq. 23."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def rounding_reg(h: torch.Tensor, beta: float) -> torch.Tensor:
    """sum(1 - |2h - 1|^beta): zero only when every h is 0 or 1 (AdaRound eq. 24)."""
    return (1 - (2 * h - 1).abs().pow(beta)).sum()


def beta_at(it: int, cfg: ReconConfig) -> float | None:
    """Annealed beta at iteration ``it``, or None during warm-up (regularizer off)."""
    start = int(cfg.warmup * cfg.iters)
    if it < start:
        return None
    t = (it - start) / max(cfg.iters - start, 1)
    return cfg.beta_end + (cfg.beta_start - cfg.beta_end) * max(0.0, 1.0 - t)


class AdaRoundQuantizer(nn.Module):
    """Stands in for a layer's WeightQuantizer during reconstruction (same grid, learned rounding)."""

    def __init__(self, wq: WeightQuantizer, weight: torch.Tensor):
        super().__init__()
        self.bits = wq.bits
        self.register_buffer("scale", wq.scale)
        self.register_buffer("zero_point", wq.zero_point)
        w = weight.detach() / wq.scale
        self.register_buffer("w_floor", torch.floor(w))
        rest = (w - torch.floor(w)).clamp(0, 1)
        self.v = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))  # h(v) == rest
        self.soft = True

    def h(self) -> torch.Tensor:
        return rectified_sigmoid(self.v)

    def forward(self, _w: torch.Tensor) -> torch.Tensor:
        up = self.h() if self.soft else (self.v >= 0).to(self.v.dtype)
        q = torch.clamp(self.w_floor + up + self.zero_point, 0, qmax(self.bits))
        return (q - self.zero_point) * self.scale


class _Stop(Exception):
    pass


@torch.no_grad()
def unit_io(model: nn.Module, unit_name: str, images: torch.Tensor, chunk: int,
            want: str) -> torch.Tensor:
    """The input (``want="input"``) or output of submodule ``unit_name`` over all images."""
    unit = model.get_submodule(unit_name)
    got: list[torch.Tensor] = []

    def pre(_m, args):
        got.append(args[0].detach())
        raise _Stop  # nothing after the unit is needed

    def post(_m, _args, out):
        got.append(out.detach())
        raise _Stop

    h = unit.register_forward_pre_hook(pre) if want == "input" else unit.register_forward_hook(post)
    try:
        for i in range(0, images.shape[0], chunk):
            try:
                model(images[i:i + chunk])
            except _Stop:
                pass
    finally:
        h.remove()
    if len(got) != math.ceil(images.shape[0] / chunk):
        raise ModelError(f"unit {unit_name!r} is not called in the forward pass; cannot reconstruct it")
    return torch.cat(got)


def record_calls(model: nn.Module, names: list[str], example: torch.Tensor) -> list[tuple[str, tuple, dict]]:
    """One no-grad forward pass; every call of a named submodule as (name, args, kwargs), in order."""
    calls: list[tuple[str, tuple, dict]] = []
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, kwargs, n=n: calls.append((n, args, kwargs)), with_kwargs=True) for n in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return calls


def forward_order(model: nn.Module, names: list[str], example: torch.Tensor) -> list[str]:
    """``names`` sorted by the order of their first call in a forward pass; ModelError if reused."""
    calls = [n for n, _, _ in record_calls(model, names, example)]
    reused = sorted({n for n in calls if calls.count(n) > 1})
    if reused:
        raise ModelError(f"{', '.join(reused)} run more than once per forward pass: reconstruction "
                         "needs each reconstructed layer/block to be called once")
    return list(dict.fromkeys(calls))


def _bake(layers: dict[str, nn.Module], rounders: dict[str, AdaRoundQuantizer],
          originals: dict[str, WeightQuantizer]) -> None:
    """Write the hard rounding into each weight and restore the nearest-rounding quantizer."""
    with torch.no_grad():
        for n, layer in layers.items():
            rounders[n].soft = False
            layer.weight.copy_(rounders[n](layer.weight))
            layer.wq = originals[n]


def _rec_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over channels (dim 1), mean over samples and positions."""
    return (out - target).pow(2).sum(1).mean()


def _unit_layers(unit: nn.Module, name: str) -> dict[str, nn.Module]:
    """The quantized (bits < 32) layers inside a unit, by full name."""
    if isinstance(unit, QUANT_LAYERS):
        layers = {name: unit}
    else:
        prefix = f"{name}." if name else ""
        layers = {prefix + n: m for n, m in quant_layers(unit).items()}
    return {n: m for n, m in layers.items() if m.wq.bits < 32}


def _set_soft(rounders: dict[str, AdaRoundQuantizer], soft: bool) -> None:
    for r in rounders.values():
        r.soft = soft


def _rec_fn(unit: nn.Module, x_in: torch.Tensor, target: torch.Tensor, cfg: ReconConfig,
            gen: torch.Generator):
    """The reconstruction loss of one step: full-batch Gram form for a single layer, else a mini-batch."""
    if isinstance(unit, QUANT_LAYERS) and gram_ok(unit):
        gram = GramLoss(unit, x_in, target, cfg.chunk)
        return lambda: gram(unit.quantized_weight())

    def minibatch() -> torch.Tensor:
        idx = torch.randint(x_in.shape[0], (min(cfg.batch_size, x_in.shape[0]),), generator=gen)
        return _rec_loss(unit(x_in[idx]), target[idx])
    return minibatch


def reconstruct(q_model: nn.Module, fp_model: nn.Module, images: torch.Tensor, units: list[str],
                cfg: ReconConfig | None = None, stage: str = "adaround", progress: ProgressFn = None,
                cancel: CancelFn = None) -> list[dict]:
    """Learn the rounding of every quantized layer inside each unit of ``q_model``, unit by unit.

    ``units`` are submodule names present in both models (layers or blocks), reconstructed in
    forward order. Returns one record per unit: name, layers, loss with nearest rounding, loss
    after, and which rounding was kept (a learned rounding that ends no better than nearest
    rounding on the calibration data is dropped). On NaN/Inf the unit keeps its last finite
    rounding and NumericalError(last_good=q_model) is raised; on cancel the current rounding is
    baked and Cancelled(partial=q_model) is raised.
    """
    cfg = cfg or ReconConfig()
    q_model.eval(), fp_model.eval()
    for p in q_model.parameters():
        p.requires_grad_(False)
    units = [u for u in forward_order(q_model, units, images[:1])
             if _unit_layers(q_model.get_submodule(u), u)]  # units with something to round
    gen = torch.Generator().manual_seed(cfg.seed)
    records = []
    for ui, name in enumerate(units):
        layers = _unit_layers(q_model.get_submodule(name), name)
        tick = _ticker(progress, stage, name, ui, len(units), cfg)
        records.append(_reconstruct_unit(q_model, fp_model, images, name, layers, cfg=cfg, gen=gen, stage=stage,
                                         tick=tick, cancel=cancel))
    return records


def _ticker(progress: ProgressFn, stage: str, name: str, ui: int, n_units: int, cfg: ReconConfig):
    """Progress reporting for unit ``ui``: global step numbering over all units."""
    def tick(it: int, loss: torch.Tensor, rec: torch.Tensor, reg: torch.Tensor, beta: float | None) -> None:
        if progress is None or not ((it + 1) % cfg.progress_every == 0 or it == cfg.iters - 1):
            return
        progress(Progress(stage=stage, step=ui * cfg.iters + it + 1, total=n_units * cfg.iters,
                          loss=loss.item(), parts={"rec": rec.item(), "round": float(reg)},
                          extra={"unit": name, "unit_index": ui + 1, "n_units": n_units, "beta": beta}))
    return tick


def _reconstruct_unit(q_model: nn.Module, fp_model: nn.Module, images: torch.Tensor, name: str,
                      layers: dict[str, nn.Module], *, cfg: ReconConfig, gen: torch.Generator, stage: str,
                      tick, cancel: CancelFn) -> dict:
    unit = q_model.get_submodule(name)
    x_in = unit_io(q_model, name, images, cfg.chunk, "input")
    target = unit_io(fp_model, name, images, cfg.chunk, "output")
    originals = {n: m.wq for n, m in layers.items()}
    fp_weights = {n: m.weight.detach().clone() for n, m in layers.items()}
    rounders = {n: AdaRoundQuantizer(m.wq, m.weight) for n, m in layers.items()}
    for n, m in layers.items():
        m.wq = rounders[n]
    with torch.no_grad():
        _set_soft(rounders, False)   # hard rounding at init == nearest rounding
        before = _rec_loss(unit(x_in), target).item()
        _set_soft(rounders, True)

    rec_fn = _rec_fn(unit, x_in, target, cfg, gen)
    params = [r.v for r in rounders.values()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    last_good = [p.detach().clone() for p in params]
    for it in range(cfg.iters):
        rec = rec_fn()
        beta = beta_at(it, cfg)
        reg = (sum(rounding_reg(r.h(), beta) for r in rounders.values()) if beta is not None
               else torch.zeros(()))
        loss = rec + cfg.reg_weight * reg
        if not torch.isfinite(loss):
            with torch.no_grad():
                for p, good in zip(params, last_good):
                    p.copy_(good)
            _bake(layers, rounders, originals)
            raise NumericalError(f"{stage}: loss became {loss.item()} at step {it + 1} of {name!r}; "
                                 "kept the last finite rounding", iteration=it + 1, last_good=q_model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, good in zip(params, last_good):
                good.copy_(p)
        tick(it, loss.detach(), rec.detach(), reg.detach(), beta)
        try:
            check_cancel(cancel, partial=q_model)
        except Cancelled:
            _bake(layers, rounders, originals)
            raise

    _bake(layers, rounders, originals)
    with torch.no_grad():
        after = _rec_loss(unit(x_in), target).item()
        if not after < before:  # a short schedule can end worse than nearest: never keep that
            for n, m in layers.items():
                m.weight.copy_(fp_weights[n])
    return {"unit": name, "layers": list(layers), "loss_nearest": before, "loss_after": min(after, before),
            "rounding": "learned" if after < before else "nearest"}


def layer_units(q_model: nn.Module) -> list[str]:
    """AdaRound's units: every quantized conv/linear layer."""
    return list(quant_layers(q_model))


def adaround(q_model: nn.Module, fp_model: nn.Module, images: torch.Tensor, cfg: ReconConfig | None = None,
             progress: ProgressFn = None, cancel: CancelFn = None) -> list[dict]:
    """Layer-wise AdaRound of every quantized layer of ``q_model`` in place (see module docstring)."""
    return reconstruct(q_model, fp_model, images, layer_units(q_model), cfg, "adaround", progress, cancel)
