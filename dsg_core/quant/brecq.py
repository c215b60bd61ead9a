"""BRECQ-style block reconstruction (Li et al. 2021): AdaRound, but the loss is a block's output.

Reconstructing a whole residual block lets the rounding of its convs cooperate (the cross-layer
dependency BRECQ's second-order analysis points to) while staying local enough for little data.
Units: walking the model from the root, ``nn.Sequential``/``ModuleList``/``ModuleDict`` containers
are opened; any other child that holds 1..``max_layers`` quantized layers (a ResNet BasicBlock, a
MobileNetV2 InvertedResidual, a torchvision Bottleneck) is one block; a bare conv/linear is its
own unit; a custom module holding more layers than that is opened like a container; a block that
is not called exactly once with a single tensor falls back to its layers (layer-wise AdaRound).
Loss: plain output MSE (BRECQ's ``mse`` mode, no Fisher weighting); rounding as in ``adaround.py``.
Activation step sizes are not learned here: activation ranges come from calibration.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..progress import CancelFn, ProgressFn
from .adaround import ReconConfig, reconstruct, record_calls
from .modules import QUANT_LAYERS

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def find_blocks(model: nn.Module, max_layers: int = 12) -> list[str]:
    """Names of the reconstruction units of a quantized model, in registration order."""
    if isinstance(model, QUANT_LAYERS):
        return [""]
    units: list[str] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for cname, child in module.named_children():
            name = prefix + cname
            n_layers = sum(isinstance(m, QUANT_LAYERS) for m in child.modules())
            if n_layers == 0:
                continue
            is_block = not isinstance(child, CONTAINERS) and n_layers <= max_layers
            if isinstance(child, QUANT_LAYERS) or is_block:
                units.append(name)
            else:
                visit(name + ".", child)

    visit("", model)
    return units


def _fallback_to_layers(model: nn.Module, units: list[str], example: torch.Tensor) -> list[str]:
    """Replace blocks that are not called exactly once with one tensor by their layers."""
    calls: dict[str, list[bool]] = {n: [] for n in units}
    for n, args, kwargs in record_calls(model, units, example):
        calls[n].append(len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor))
    out = []
    for n in units:
        unit = model.get_submodule(n)
        if isinstance(unit, QUANT_LAYERS) or calls[n] == [True]:
            out.append(n)
        else:
            out += [f"{n}.{m}" for m, layer in unit.named_modules() if isinstance(layer, QUANT_LAYERS)]
    return out


def brecq(q_model: nn.Module, fp_model: nn.Module, images: torch.Tensor, cfg: ReconConfig | None = None,
          progress: ProgressFn = None, cancel: CancelFn = None) -> list[dict]:
    """Block-wise reconstruction of every quantized layer of ``q_model`` in place."""
    units = _fallback_to_layers(q_model, find_blocks(q_model), images[:1])
    return reconstruct(q_model, fp_model, images, units, cfg, "brecq", progress, cancel)
