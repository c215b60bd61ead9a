"""Evaluation metrics against hand-computed values."""

import math

import pytest
import torch
import torch.nn as nn

from dsg_core.errors import DataError
from dsg_core.evaluate import agreement, evaluate_quantized, layer_sqnr, mean_kl, top1
from dsg_core.quant import QuantConfig, convert, quantize_model


class FixedLogits(nn.Module):
    """Returns the same logits for every input (one row per sample)."""

    def __init__(self, row):
        super().__init__()
        self.lin = nn.Linear(1, len(row))
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.tensor(row))

    def forward(self, x):
        return self.lin(x.reshape(x.shape[0], -1)[:, :1])


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).eval()


def test_top1_hand_computed_and_batch_invariant():
    eye = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False))
    with torch.no_grad():
        eye[1].weight.copy_(torch.eye(4))
    x = torch.eye(4).repeat(5, 1).view(20, 1, 2, 2)      # sample i predicts class i % 4
    y = torch.arange(20) % 4
    assert top1(eye, x, y) == 100.0
    y_half = y.clone()
    y_half[:10] = (y_half[:10] + 1) % 4
    assert top1(eye, x, y_half) == pytest.approx(50.0)
    assert top1(eye, x, y_half, batch_size=3) == pytest.approx(50.0)


def test_kl_and_agreement_hand_computed():
    x = torch.zeros(6, 1, 2, 2)
    p, q = FixedLogits([0.0, 0.0]), FixedLogits([math.log(3.0), 0.0])   # [.5, .5] vs [.75, .25]
    assert mean_kl(p, q, x) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)  # float32 logits
    assert agreement(FixedLogits([0.0, 1.0]), q, x) == 0.0
    assert agreement(FixedLogits([2.0, 1.0]), q, x, batch_size=4) == 1.0


def test_model_against_itself():
    net, x = small_net(), torch.randn(30, 1, 8, 8)
    assert mean_kl(net, net, x, batch_size=7) == 0.0
    assert agreement(net, net, x) == 1.0
    y = torch.randint(0, 4, (30,))
    res = evaluate_quantized(net, net, x, y, batch_size=8)
    assert set(res) == {"fp32_top1", "quant_top1", "agreement", "kl"}
    assert res["fp32_top1"] == res["quant_top1"] == top1(net, x, y)
    assert 0.0 <= res["fp32_top1"] <= 100.0 and res["agreement"] == 1.0 and res["kl"] == 0.0


def test_evaluate_quantized_sees_quantization():
    net, x = small_net(), torch.randn(64, 1, 8, 8)
    q = quantize_model(net, x, QuantConfig(wbits=2, abits=2))
    res = evaluate_quantized(net, q, x, torch.zeros(64, dtype=torch.long))
    assert res["kl"] > 1e-6 and 0.0 <= res["agreement"] <= 1.0


def test_layer_sqnr_hand_computed():
    net, x = small_net(), torch.randn(20, 1, 8, 8)
    q, _ = convert(net, wbits=32, abits=32)
    assert [n for n, _ in layer_sqnr(net, q, x)] == ["0", "3", "8"]
    assert all(db == math.inf for _, db in layer_sqnr(net, q, x))
    with torch.no_grad():  # scale the first conv by 1.1 (no bias): error = 0.1 * output -> 20 dB
        q[0].weight.mul_(1.1)
        q[0].bias.mul_(1.1)
    name, db = layer_sqnr(net, q, x, batch_size=6)[0]
    assert name == "0" and db == pytest.approx(20.0, abs=1e-4)


def test_layer_sqnr_with_folded_bn_and_quantization():
    net, x = small_net(), torch.randn(20, 1, 8, 8)
    folded = quantize_model(net, x, QuantConfig(wbits=32, abits=32, fold_bn=True))
    assert all(db > 60 for _, db in layer_sqnr(net, folded, x))   # compared with the BN outputs
    q4 = quantize_model(net, x, QuantConfig(wbits=4, abits=4))
    dbs = dict(layer_sqnr(net, q4, x))
    assert set(dbs) == {"0", "3", "8"} and all(0 < v < 60 for v in dbs.values())


def test_bad_inputs_raise_data_error():
    net = small_net()
    with pytest.raises(DataError):
        top1(net, torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long))
    with pytest.raises(DataError, match="labels"):
        top1(net, torch.randn(4, 1, 8, 8), torch.zeros(3, dtype=torch.long))
