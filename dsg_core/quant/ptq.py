"""Post-training quantization in one call: convert, calibrate activations, optionally reconstruct.

Defaults are the paper's quantizer (sec. 4): all conv/linear layers including first and last,
per-output-channel asymmetric min/max weights, per-tensor asymmetric activations after every
ReLU/ReLU6, BN not folded, one forward pass of the calibration batch.

``quantizer`` picks how the calibration data is used:
- ``dsg-avg`` / ``minmax`` / ``percentile`` / ``mse``: weights by nearest rounding, activation
  ranges by that rule (``calibrate.py``).
- ``adaround`` / ``brecq``: activation ranges first, by the ``recon_act`` rule (default ``dsg-avg``,
  the DSG code's rule), then the weight rounding of each layer / block is learned to reconstruct
  the FP32 output from the quantized model's own inputs (``adaround.py``, ``brecq.py``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from ..models.fold import fold_bn as fold_bn_layers
from ..progress import CancelFn, ProgressFn
from .adaround import ReconConfig, adaround
from .brecq import brecq
from .calibrate import CALIBRATORS, calibrate_activations, check_images, forward_checked
from .modules import convert
from .quantizer import check_bits

RECONSTRUCTORS = ("adaround", "brecq")
QUANTIZERS = CALIBRATORS + RECONSTRUCTORS


@dataclass
class QuantConfig:
    wbits: int = 4
    abits: int = 4
    quantizer: str = "dsg-avg"          # one of QUANTIZERS
    weight_granularity: str = "channel"  # "channel" (per output channel) or "tensor"
    symmetric: bool = False              # symmetric weight grid; activations are always asymmetric
    first_last: str = "same"             # "same" (paper) or "8bit" weights (and inputs) at the edges
    fold_bn: bool = False                # fold BN into the conv before quantizing (paper: no)
    act_placement: str = "relu"          # "relu" (paper) or "all" (+ every conv/linear input)
    recon_act: str = "dsg-avg"           # activation range rule used with adaround / brecq
    recon_iters: int = 200               # Adam steps per layer (adaround) or block (brecq)
    recon_batch: int = 16                # images per step for blocks (layers use all, via gram.py)
    recon_lr: float = 1e-2
    recon_reg: float = 0.01              # AdaRound's lambda
    percentile: float = 99.99            # for quantizer="percentile"
    calib_batch: int = 256               # images per forward pass during calibration
    seed: int = 0

    def validate(self) -> "QuantConfig":
        check_bits(self.wbits, "wbits")
        check_bits(self.abits, "abits")
        choices = {"quantizer": QUANTIZERS, "weight_granularity": ("channel", "tensor"),
                   "first_last": ("same", "8bit"), "act_placement": ("relu", "all"), "recon_act": CALIBRATORS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if not 50 < self.percentile <= 100:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        for key in ("recon_iters", "recon_batch", "calib_batch"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if not self.recon_lr > 0 or not self.recon_reg >= 0:
            raise ConfigError("recon_lr must be > 0 and recon_reg >= 0")
        return self

    @property
    def act_calibrator(self) -> str:
        """The activation range rule actually used."""
        return self.recon_act if self.quantizer in RECONSTRUCTORS else self.quantizer

    def recon_config(self) -> ReconConfig:
        return ReconConfig(iters=self.recon_iters, batch_size=self.recon_batch, lr=self.recon_lr,
                           reg_weight=self.recon_reg, chunk=self.calib_batch, seed=self.seed)


def _fold_checked(fp: nn.Module, images: torch.Tensor) -> dict[str, str]:
    """Fold BN into ``fp`` in place and verify the network still computes the same function."""
    ref = forward_checked(fp, images[:16])
    folded = fold_bn_layers(fp)
    out = forward_checked(fp, images[:16])
    if not torch.allclose(out, ref, rtol=1e-3, atol=1e-3 * ref.abs().max().item() + 1e-6):
        raise ModelError("folding BatchNorm changed the model's output (a BN that follows a conv in "
                         "registration order does not follow it in the forward pass); use fold_bn=False")
    return folded


def quantize_model(model: nn.Module, calib_images: torch.Tensor, cfg: QuantConfig | None = None,
                   progress: ProgressFn = None, cancel: CancelFn = None) -> nn.Module:
    """A fake-quantized copy of ``model`` (never modified) calibrated on ``calib_images``.

    The result carries ``quant_report`` (:class:`~dsg_core.quant.modules.QuantReport`): placed
    quantizers, warnings (e.g. no activation quantizer could be placed), reconstruction losses, time.
    """
    cfg = (cfg or QuantConfig()).validate()
    t0 = time.perf_counter()
    fp = copy.deepcopy(model).eval()
    check_images(calib_images, fp)
    param = next(fp.parameters(), None)
    images = calib_images.to(param.device) if param is not None else calib_images
    forward_checked(fp, images[:2])  # the data fits the model (DataError otherwise)
    folded = _fold_checked(fp, images) if cfg.fold_bn else {}
    q, report = convert(fp, cfg.wbits, cfg.abits, per_channel=cfg.weight_granularity == "channel",
                        symmetric=cfg.symmetric, first_last=cfg.first_last, act_placement=cfg.act_placement,
                        folded_bn=folded)
    report.calibrator = cfg.act_calibrator
    report.warnings += calibrate_activations(q, images, cfg.act_calibrator, cfg.percentile, cfg.calib_batch,
                                             seed=cfg.seed)
    q.quant_report = report
    if cfg.quantizer in RECONSTRUCTORS:
        run = adaround if cfg.quantizer == "adaround" else brecq
        report.recon = run(q, fp, images, cfg.recon_config(), progress, cancel)
    report.seconds = time.perf_counter() - t0
    return q.eval()
