"""Fake quantization of trained networks: the paper's PTQ quantizer plus AdaRound / BRECQ.

    from dsg_core.quant import QuantConfig, quantize_model
    q = quantize_model(model, calib_images, QuantConfig(wbits=4, abits=4, quantizer="dsg-avg"))
"""

from ..models.fold import fold_bn
from .adaround import ReconConfig, adaround, reconstruct
from .brecq import brecq, find_blocks
from .calibrate import CALIBRATORS, calibrate_activations
from .modules import (
                      ActQuantizer,
                      QuantAct,
                      QuantConv2d,
                      QuantLinear,
                      QuantReport,
                      WeightQuantizer,
                      act_quantizers,
                      convert,
                      quant_layers,
                      set_act_quant,
)
from .ptq import QUANTIZERS, QuantConfig, quantize_model
from .quantizer import VALID_BITS, check_bits, fake_quant, qparams, weight_qparams

__all__ = [
    "QuantConfig", "quantize_model", "QUANTIZERS", "CALIBRATORS", "VALID_BITS",
    "qparams", "fake_quant", "weight_qparams", "check_bits",
    "convert", "fold_bn", "calibrate_activations", "adaround", "brecq", "reconstruct", "find_blocks",
    "ReconConfig", "QuantReport", "WeightQuantizer", "ActQuantizer", "QuantAct", "QuantConv2d",
    "QuantLinear", "act_quantizers", "quant_layers", "set_act_quant",
]
