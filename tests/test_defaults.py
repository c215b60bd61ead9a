"""The default view shows something: at the default bits and quantizer, Gaussian-noise calibration
loses at least 5 points of top-1 against FP32 on the default model, while real data does not."""

import torch

from dsg_core.data import real_split
from dsg_core.experiments import (
    DEFAULT_ABITS,
    DEFAULT_QUANTIZER,
    DEFAULT_WBITS,
    TestSet,
    quantize_and_evaluate,
    real_calibration,
)
from dsg_core.models import default_model_name, get_spec, load_model
from dsg_core.quant import QuantConfig


def test_calibration_data_matters_at_the_default_bits():
    name = default_model_name()
    spec, model = get_spec(name), load_model(name)
    test = TestSet.of(model, *real_split(name, "test"))
    cfg = QuantConfig(wbits=DEFAULT_WBITS, abits=DEFAULT_ABITS, quantizer=DEFAULT_QUANTIZER)
    gauss, real = [], []
    for seed in range(5):
        noise = torch.randn((64, *spec.input_shape), generator=torch.Generator().manual_seed(seed))
        gauss.append(quantize_and_evaluate(model, noise, cfg, test)["quant_top1"])
        real.append(quantize_and_evaluate(model, real_calibration(name, 64, seed), cfg, test)["quant_top1"])
    fp32 = spec.fp32_top1
    assert fp32 - sum(gauss) / 5 >= 5.0, gauss
    assert fp32 - sum(real) / 5 < 5.0, real
