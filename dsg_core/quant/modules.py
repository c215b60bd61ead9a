"""Quantized building blocks and the model conversion that places them (ZeroQ-style, paper sec. 4).

- Every ``nn.Conv2d`` / ``nn.Linear`` becomes :class:`QuantConv2d` / :class:`QuantLinear`: same
  parameter names, weights fake-quantized on the fly by a :class:`WeightQuantizer` whose scale and
  zero point are fixed at conversion (per output channel, asymmetric min/max by default).
- Every ``nn.ReLU`` / ``nn.ReLU6`` module becomes :class:`QuantAct` = the activation followed by a
  per-tensor asymmetric :class:`ActQuantizer`. Functional ``F.relu`` calls are invisible to module
  replacement: such a model gets no activation quantizers there (the report warns if none at all).
  Residual adds need nothing special: in a ResNet the sum is followed by a ReLU module.
- ``act_placement="all"`` also quantizes the *input* of every conv/linear (the image and, e.g., the
  pooled features before the classifier, the un-activated outputs of MobileNet blocks).

Activation quantizers pass values through until calibrated (``calibrate.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from .quantizer import check_bits, fake_quant, qparams, weight_qparams

ACT_TYPES = (nn.ReLU, nn.ReLU6)


class WeightQuantizer(nn.Module):
    """Fake-quantizes a weight with parameters fixed from the weight it was built for."""

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool = True, symmetric: bool = False):
        super().__init__()
        self.bits, self.per_channel, self.symmetric = check_bits(bits, "wbits"), per_channel, symmetric
        scale, zero_point = weight_qparams(weight, bits, per_channel, symmetric)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quant(w, self.scale, self.zero_point, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, symmetric={self.symmetric}"


class ActQuantizer(nn.Module):
    """Per-tensor asymmetric activation fake-quantizer; identity until calibrated or when disabled."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = check_bits(bits, "abits")
        self.enabled = True
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.register_buffer("lo", torch.tensor(0.0))   # calibrated range, kept for display
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))

    def set_range(self, lo: float, hi: float) -> None:
        scale, zero_point = qparams(torch.tensor(float(lo)), torch.tensor(float(hi)), self.bits)
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)
        self.lo.fill_(min(float(lo), 0.0))
        self.hi.fill_(max(float(hi), 0.0))
        self.calibrated.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits == 32 or not self.enabled or not bool(self.calibrated):
            return x
        return fake_quant(x, self.scale, self.zero_point, self.bits)

    def extra_repr(self) -> str:
        rng = f", range=[{self.lo.item():.4g}, {self.hi.item():.4g}]" if bool(self.calibrated) else ""
        return f"bits={self.bits}{rng}"


class QuantAct(nn.Module):
    """An activation module followed by its output quantizer."""

    def __init__(self, act: nn.Module, quant: ActQuantizer):
        super().__init__()
        self.act, self.quant = act, quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.act(x))


class _QuantLayerMixin:
    """Shared by QuantConv2d / QuantLinear: weight quantizer, optional input quantizer, provenance."""

    wq: WeightQuantizer
    in_quant: ActQuantizer | None
    folded_bn: str | None  # name of the BN folded into this layer (evaluation compares with its output)

    def _attach(self, src: nn.Module, wbits: int, per_channel: bool, symmetric: bool,
                in_bits: int | None, folded_bn: str | None) -> None:
        self.weight = src.weight
        self.bias = src.bias
        self.wq = WeightQuantizer(src.weight, wbits, per_channel, symmetric)
        self.in_quant = ActQuantizer(in_bits) if in_bits is not None else None
        self.folded_bn = folded_bn

    def quantized_weight(self) -> torch.Tensor:
        return self.wq(self.weight)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_quant(x) if self.in_quant is not None else x


class QuantConv2d(_QuantLayerMixin, nn.Conv2d):
    @classmethod
    def from_float(cls, conv: nn.Conv2d, wbits: int, per_channel: bool = True, symmetric: bool = False,
                   in_bits: int | None = None, folded_bn: str | None = None) -> "QuantConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                device=conv.weight.device, dtype=conv.weight.dtype)
        q._attach(conv, wbits, per_channel, symmetric, in_bits, folded_bn)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self._input(x), self.quantized_weight(), self.bias)


class QuantLinear(_QuantLayerMixin, nn.Linear):
    @classmethod
    def from_float(cls, lin: nn.Linear, wbits: int, per_channel: bool = True, symmetric: bool = False,
                   in_bits: int | None = None, folded_bn: str | None = None) -> "QuantLinear":
        q = cls(lin.in_features, lin.out_features, lin.bias is not None,
                device=lin.weight.device, dtype=lin.weight.dtype)
        q._attach(lin, wbits, per_channel, symmetric, in_bits, folded_bn)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self._input(x), self.quantized_weight(), self.bias)


QUANT_LAYERS = (QuantConv2d, QuantLinear)


@dataclass
class QuantReport:
    """What conversion (and later calibration / reconstruction) did; attached as ``model.quant_report``."""

    weight_layers: list[str] = field(default_factory=list)
    act_quantizers: list[str] = field(default_factory=list)
    first_layer: str = ""
    last_layer: str = ""
    folded_bn: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    calibrator: str = ""
    recon: list[dict] = field(default_factory=list)  # per reconstructed unit: name, loss before/after
    seconds: float = 0.0


def _check_supported(model: nn.Module) -> list[str]:
    """Names of the conv/linear layers to quantize; ModelError for weight layers we cannot handle."""
    names = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            names.append(name)
        elif isinstance(m, nn.modules.conv._ConvNd) or isinstance(m, (nn.Bilinear, nn.MultiheadAttention)):
            raise ModelError(f"layer {name!r} ({type(m).__name__}) cannot be quantized: only Conv2d and "
                             "Linear weight layers are supported")
    if not names:
        raise ModelError("the model has no Conv2d or Linear layer: nothing to quantize")
    return names


def convert(model: nn.Module, wbits: int = 4, abits: int = 4, per_channel: bool = True,
            symmetric: bool = False, first_last: str = "same", act_placement: str = "relu",
            folded_bn: dict[str, str] | None = None) -> tuple[nn.Module, QuantReport]:
    """A quantized deep copy of ``model`` (the input is never modified) and a report of what was placed.

    ``first_last="8bit"`` keeps the first and last conv/linear (registration order) at 8-bit weights
    and, with ``act_placement="all"``, 8-bit inputs; ``"same"`` (paper) quantizes them like the rest.
    """
    check_bits(wbits, "wbits"), check_bits(abits, "abits")
    if first_last not in ("same", "8bit"):
        raise ConfigError(f"first_last must be 'same' or '8bit', not {first_last!r}")
    if act_placement not in ("relu", "all"):
        raise ConfigError(f"act_placement must be 'relu' or 'all', not {act_placement!r}")
    layer_names = _check_supported(model)
    q = copy.deepcopy(model).eval()
    folded_bn = folded_bn or {}
    report = QuantReport(first_layer=layer_names[0], last_layer=layer_names[-1], folded_bn=dict(folded_bn))
    edge = {layer_names[0], layer_names[-1]} if first_last == "8bit" else set()

    def replacement(name: str, m: nn.Module) -> nn.Module | None:
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, QUANT_LAYERS):
            wb = max(wbits, 8) if name in edge else wbits          # never *lower* precision at the edges
            ib = (max(abits, 8) if name in edge else abits) if act_placement == "all" else None
            cls = QuantConv2d if isinstance(m, nn.Conv2d) else QuantLinear
            report.weight_layers.append(name)
            if ib is not None:
                report.act_quantizers.append(f"{name}.in_quant" if name else "in_quant")
            return cls.from_float(m, wb, per_channel, symmetric, ib, folded_bn.get(name))
        if isinstance(m, ACT_TYPES):
            report.act_quantizers.append(f"{name}.quant" if name else "quant")
            return QuantAct(m, ActQuantizer(abits))
        return None

    if (root := replacement("", q)) is not None:  # a bare layer
        q = root
    for parent_name, parent in list(q.named_modules()):
        for cname, child in list(parent.named_children()):
            new = replacement(f"{parent_name}.{cname}" if parent_name else cname, child)
            if new is not None:
                setattr(parent, cname, new)

    if abits < 32 and not report.act_quantizers:
        report.warnings.append("no activation quantizer was placed: the model has no nn.ReLU/nn.ReLU6 "
                               "modules (functional F.relu calls cannot be seen), so activations stay "
                               "FP32; use act_placement='all' to quantize conv/linear inputs instead")
    param = next(model.parameters(), None)
    if param is not None:  # the quantizers' buffers are created on the CPU: put them beside the weights
        q.to(param.device)
    return q, report


def act_quantizers(model: nn.Module) -> dict[str, ActQuantizer]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ActQuantizer)}


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QUANT_LAYERS)}


def set_act_quant(model: nn.Module, enabled: bool) -> None:
    """Switch every activation quantizer on or off (off = FP32 activations, e.g. during calibration)."""
    for m in act_quantizers(model).values():
        m.enabled = enabled
