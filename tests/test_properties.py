"""Property-based: any config either runs or raises the project's own DSGError, nothing else."""

import math

import torch
from conftest import TinyBNNet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsg_core.errors import DSGError
from dsg_core.generation import GenerationConfig, generate
from dsg_core.quant import QuantConfig, quantize_model

SHAPE = (1, 8, 8)
NET = TinyBNNet().eval()
floats = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(-2, 3)

generation_configs = st.builds(
    GenerationConfig,
    method=st.sampled_from(["gaussian", "zeroq", "dsg", "bogus"]),
    samples=st.integers(-2, 9), batch_size=st.integers(-1, 6), iterations=st.integers(-1, 3),
    lr=floats, seed=st.integers(0, 2**31), init=st.sampled_from(["gaussian", "uniform", "zeros"]),
    sda=st.booleans(), epsilon=floats, lse=st.booleans(), lse_weight=floats, sci=st.booleans(),
    sci_weight=floats, ce_weight=floats, tv_weight=floats, l2_weight=floats, jitter=st.integers(-1, 3),
    delta=st.none() | floats, gamma=st.none() | floats,
    targets=st.none() | st.lists(st.integers(-2, 12), max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generation_configs)
def test_generation_runs_or_raises_dsg_error(cfg):
    try:
        s = generate(NET, SHAPE, cfg, num_classes=10)
    except DSGError as exc:
        assert str(exc)
        return
    assert s.images.shape[1:] == SHAPE and torch.isfinite(s.images).all()


quant_configs = st.builds(
    QuantConfig, wbits=st.sampled_from([0, 1, 2, 3, 4, 8, 9, 16, 32]), abits=st.sampled_from([1, 2, 4, 8, 32, 33]),
    quantizer=st.sampled_from(["minmax", "dsg-avg", "percentile", "mse", "adaround", "brecq", "magic"]),
    weight_granularity=st.sampled_from(["channel", "tensor", "row"]), symmetric=st.booleans(),
    first_last=st.sampled_from(["same", "8bit", "4bit"]), fold_bn=st.booleans(),
    act_placement=st.sampled_from(["relu", "all", "none"]), recon_iters=st.integers(-1, 3),
    percentile=st.floats(0, 101), calib_batch=st.integers(-1, 16),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quant_configs, st.integers(0, 6), st.booleans())
def test_quantization_runs_or_raises_dsg_error(cfg, n_calib, poison):
    calib = torch.randn(n_calib, *SHAPE)
    if poison and n_calib:
        calib[0, 0, 0, 0] = math.nan
    try:
        q = quantize_model(NET, calib, cfg)
    except DSGError as exc:
        assert str(exc)
        return
    out = q(torch.randn(2, *SHAPE))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
