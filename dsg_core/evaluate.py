"""How good is a quantized model? Accuracy, agreement with FP32, output KL, per-layer SQNR.

All functions run batched under ``torch.no_grad`` with both models in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import DataError, ModelError


def _check(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise DataError("evaluation needs a non-empty batch of inputs [N, ...]")
    if y is not None and (y.dim() != 1 or y.shape[0] != x.shape[0]):
        raise DataError(f"labels of shape {tuple(y.shape)} do not match {x.shape[0]} inputs")


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Model outputs for all of ``x``, computed ``batch_size`` at a time."""
    _check(x)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    finally:
        model.train(was_training)


def top1_of(z: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (z.argmax(1) == y).float().mean().item()


def _agreement(z_fp: torch.Tensor, z_q: torch.Tensor) -> float:
    return (z_fp.argmax(1) == z_q.argmax(1)).float().mean().item()


def _kl(z_fp: torch.Tensor, z_q: torch.Tensor) -> float:
    """KL(p_fp || p_q) = sum_k p_fp (log p_fp - log p_q), averaged over samples."""
    log_p, log_q = F.log_softmax(z_fp.double(), 1), F.log_softmax(z_q.double(), 1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean().item()


def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent (0-100)."""
    _check(x, y)
    return top1_of(logits(model, x, batch_size), y)


def agreement(fp_model: nn.Module, q_model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction (0-1) of inputs on which both models predict the same class."""
    return _agreement(logits(fp_model, x, batch_size), logits(q_model, x, batch_size))


def mean_kl(fp_model: nn.Module, q_model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> float:
    """Mean over samples of KL(softmax FP32 || softmax quantized), in nats."""
    return _kl(logits(fp_model, x, batch_size), logits(q_model, x, batch_size))


def evaluate_quantized(fp_model: nn.Module, q_model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                       batch_size: int = 256, fp_logits: torch.Tensor | None = None) -> dict[str, float | None]:
    """fp32_top1 and quant_top1 (percent), agreement (fraction), kl (nats), from one pass per model.

    Without labels (``y=None``, e.g. an unlabelled folder of the user's images) the top-1 fields are
    None and agreement with the FP32 model and the KL divergence are the measures.

    ``fp_logits`` (the FP32 model's logits on ``x``) skips the FP32 pass when many quantized
    models are scored on the same images.
    """
    _check(x, y)
    z_fp = logits(fp_model, x, batch_size) if fp_logits is None else fp_logits
    z_q = logits(q_model, x, batch_size)
    return {"fp32_top1": top1_of(z_fp, y) if y is not None else None,
            "quant_top1": top1_of(z_q, y) if y is not None else None,
            "agreement": _agreement(z_fp, z_q), "kl": _kl(z_fp, z_q)}


@torch.no_grad()
def layer_sqnr(fp_model: nn.Module, q_model: nn.Module, x: torch.Tensor,
               batch_size: int = 256) -> list[tuple[str, float]]:
    """SQNR in dB, 10 log10(sum y_fp^2 / sum (y_fp - y_q)^2), of every quantized conv/linear output.

    Each model runs on its own: a layer's quantized output includes the error accumulated upstream,
    which is what the next layer sees. A layer with a folded BN is compared with that BN's output.
    """
    from .quant.modules import quant_layers  # local: keeps evaluate importable without the quant package
    _check(x)
    q_layers = quant_layers(q_model)
    fp_modules = dict(fp_model.named_modules())
    pairs = {}
    for name, layer in q_layers.items():
        ref = layer.folded_bn or name
        if ref not in fp_modules:
            raise ModelError(f"quantized layer {name!r} has no counterpart {ref!r} in the FP32 model")
        pairs[name] = ref
    signal = {n: torch.zeros((), dtype=torch.float64, device=x.device) for n in q_layers}
    noise = {n: torch.zeros((), dtype=torch.float64, device=x.device) for n in q_layers}
    outs_fp: dict[str, torch.Tensor] = {}
    outs_q: dict[str, torch.Tensor] = {}

    def keep(store: dict, name: str):
        return lambda _m, _a, out: store.__setitem__(name, out.detach())

    handles = [fp_modules[ref].register_forward_hook(keep(outs_fp, n)) for n, ref in pairs.items()]
    handles += [layer.register_forward_hook(keep(outs_q, n)) for n, layer in q_layers.items()]
    fp_training, q_training = fp_model.training, q_model.training
    fp_model.eval(), q_model.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            fp_model(x[i:i + batch_size]), q_model(x[i:i + batch_size])
            for n in q_layers:
                ref, err = outs_fp[n].double(), outs_fp[n].double() - outs_q[n].double()
                signal[n] += ref.pow(2).sum()
                noise[n] += err.pow(2).sum()
    finally:
        for h in handles:
            h.remove()
        fp_model.train(fp_training), q_model.train(q_training)
    return [(n, _db(signal[n].item(), noise[n].item())) for n in q_layers]


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf
