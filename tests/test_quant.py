"""Quantizer math, model conversion, calibration rules, AdaRound / BRECQ, and the PTQ entry point."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dsg_core.errors import Cancelled, ConfigError, DataError, ModelError, NumericalError
from dsg_core.quant import (
    QuantConfig,
    ReconConfig,
    adaround,
    brecq,
    calibrate_activations,
    convert,
    fake_quant,
    find_blocks,
    qparams,
    quantize_model,
    weight_qparams,
)
from dsg_core.quant.adaround import _rec_loss
from dsg_core.quant.gram import GramLoss
from dsg_core.quant.modules import QuantConv2d, QuantLinear, act_quantizers


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    for m in net.modules():  # non-trivial BN statistics, so folding actually changes the weights
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


class Block(nn.Module):
    """A residual block with a functional add, as BRECQ's unit."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(c, c, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(c, c, 3, padding=1), nn.ReLU()

    def forward(self, x):
        return self.relu2(x + self.conv2(self.relu1(self.conv1(x))))


def block_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), Block(8), Block(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def images(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- quantizer math

def test_qparams_hand_computed():
    scale, zp = qparams(torch.tensor(-1.0), torch.tensor(2.0), bits=2)  # 4 levels over [-1, 2]
    assert scale.item() == pytest.approx(1.0) and zp.item() == 1.0
    x = torch.tensor([-1.4, -0.6, 0.4, 1.4, 2.6])
    assert fake_quant(x, scale, zp, 2).tolist() == [-1.0, -1.0, 0.0, 1.0, 2.0]
    s_sym, z_sym = qparams(torch.tensor(-1.0), torch.tensor(3.0), bits=4, symmetric=True)
    assert s_sym.item() == pytest.approx(3.0 / 7) and z_sym.item() == 8.0


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_grid_has_2_pow_b_levels(bits):
    x = torch.linspace(-1.0, 3.0, 20001)
    scale, zp = qparams(x.min(), x.max(), bits)
    assert torch.unique(fake_quant(x, scale, zp, bits)).numel() == 2 ** bits


def test_range_contains_zero_for_positive_inputs():
    scale, zp = qparams(torch.tensor(0.5), torch.tensor(2.0), bits=4)
    assert scale.item() == pytest.approx(2.0 / 15) and zp.item() == 0.0  # range became [0, 2]
    assert fake_quant(torch.tensor([0.0]), scale, zp, 4).item() == 0.0
    scale, zp = qparams(torch.tensor(-3.0), torch.tensor(-1.0), bits=3)  # all negative -> [-3, 0]
    assert fake_quant(torch.tensor([0.0, -3.0]), scale, zp, 3).tolist() == pytest.approx([0.0, -3.0])


def test_per_channel_scales_differ_per_channel():
    w = torch.randn(1, 4, 3, 3).repeat(3, 1, 1, 1) * torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1, 1)
    scale, _ = weight_qparams(w, bits=4, per_channel=True)
    assert scale.shape == (3, 1, 1, 1)
    assert scale.flatten().tolist() == pytest.approx([scale[0].item() * k for k in (1, 2, 4)])
    per_tensor, _ = weight_qparams(w, bits=4, per_channel=False)
    assert per_tensor.numel() == 1 and per_tensor.item() == pytest.approx(scale.max().item())


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_round_trip_error_at_most_half_a_step(bits):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=g) * torch.rand(6, 1, 1, 1, generator=g) * 3
    for per_channel in (True, False):
        scale, zp = weight_qparams(w, bits, per_channel)
        err = (fake_quant(w, scale, zp, bits) - w).abs()
        assert (err <= scale / 2 + 1e-6).all()


def test_ste_gradient_is_one_inside_and_zero_outside():
    scale, zp = qparams(torch.tensor(-1.0), torch.tensor(1.0), bits=4)
    x = torch.tensor([-0.9, -0.33, 0.0, 0.41, 0.99, -5.0, 5.0], requires_grad=True)
    fake_quant(x, scale, zp, 4).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("bits", [1, 9, 0, 16, -4])
def test_invalid_bits_raise_config_error(bits):
    with pytest.raises(ConfigError, match="2 to 8"):
        qparams(torch.tensor(0.0), torch.tensor(1.0), bits)
    with pytest.raises(ConfigError, match="wbits"):
        QuantConfig(wbits=bits).validate()
    with pytest.raises(ConfigError, match="abits"):
        quantize_model(small_net(), images(), QuantConfig(abits=bits))


def test_config_validation_names_the_bad_field():
    for bad in (dict(quantizer="zeroq"), dict(first_last="fp"), dict(act_placement="conv"),
                dict(weight_granularity="group"), dict(percentile=20), dict(recon_iters=0)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            QuantConfig(**bad).validate()


# ---------------------------------------------------------------- conversion

def test_bits_32_is_identity_exactly():
    net, x = block_net(), images()
    q = quantize_model(net, x, QuantConfig(wbits=32, abits=32))
    with torch.no_grad():
        assert torch.equal(q(x), net(x))


def test_bits_32_is_identity_on_resnet20():
    from dsg_core.models import load_model
    net = load_model("resnet20_mnist", weights="random")
    x = torch.randn(8, 1, 28, 28)
    q = quantize_model(net, x, QuantConfig(wbits=32, abits=32))
    with torch.no_grad():
        assert torch.equal(q(x), net(x))


def test_convert_places_quantizers_and_leaves_the_model_alone():
    net = small_net()
    before = copy.deepcopy(net.state_dict())
    q = quantize_model(net, images(), QuantConfig(wbits=4, abits=4))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(isinstance(m, (QuantConv2d, QuantLinear)) for m in net.modules())
    rep = q.quant_report
    assert rep.weight_layers == ["0", "3", "8"] and rep.act_quantizers == ["2.quant", "5.quant"]
    assert rep.first_layer == "0" and rep.last_layer == "8" and rep.warnings == []
    assert all(bool(m.calibrated) for m in act_quantizers(q).values())
    with torch.no_grad():
        assert not torch.equal(q(images()), net(images()))


def test_first_last_8bit_and_act_placement_all():
    q, rep = convert(small_net(), wbits=3, abits=3, first_last="8bit", act_placement="all")
    bits = {n: m.wq.bits for n, m in q.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}
    assert bits == {"0": 8, "3": 3, "8": 8}
    assert q[0].in_quant.bits == 8 and q[3].in_quant.bits == 3 and q[8].in_quant.bits == 8
    assert len(rep.act_quantizers) == 5  # 2 after activations + 3 layer inputs


def test_functional_relu_gets_a_warning():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.relu(self.conv(x)).mean((2, 3)))

    q = quantize_model(Functional().eval(), images(), QuantConfig())
    assert q.quant_report.act_quantizers == [] and "F.relu" in q.quant_report.warnings[0]


def test_shared_activation_module_gets_a_warning():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.relu, self.fc = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.relu(self.c2(self.relu(self.c1(x)))).mean((2, 3)))

    q = quantize_model(Shared().eval(), images(), QuantConfig(calib_batch=5))
    assert q.quant_report.act_quantizers == ["relu.quant"]
    assert any("relu.quant runs 2x" in w for w in q.quant_report.warnings)


def test_unsupported_models_raise_model_error():
    with pytest.raises(ModelError, match="no Conv2d or Linear"):
        convert(nn.Sequential(nn.ReLU(), nn.Flatten()))
    with pytest.raises(ModelError, match="'1'.*Conv1d"):
        convert(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 3)))


def test_fold_bn_keeps_the_function():
    net, x = small_net(), images()
    q = quantize_model(net, x, QuantConfig(wbits=32, abits=32, fold_bn=True))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in q.modules())
    assert q.quant_report.folded_bn == {"0": "1", "3": "4"}
    with torch.no_grad():
        torch.testing.assert_close(q(x), net(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- calibration

def _probe_net() -> nn.Module:
    """Linear identity then ReLU: the activation quantizer sees relu(input) exactly."""
    lin = nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
        lin.bias.zero_()
    return nn.Sequential(lin, nn.ReLU()).eval()


@pytest.mark.parametrize("method, hi", [("minmax", 8.0), ("dsg-avg", 6.0), ("percentile", 8.0)])
def test_calibration_rules_hand_computed(method, hi):
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0]])  # per-sample max 4 and 8
    q, _ = convert(_probe_net(), wbits=32, abits=4)
    calibrate_activations(q, x, method, percentile=100.0)
    aq = q[1].quant
    assert aq.lo.item() == 0.0 and aq.hi.item() == pytest.approx(hi)
    assert aq.scale.item() == pytest.approx(hi / 15)


def test_mse_calibration_clips_an_outlier():
    x = torch.cat([torch.rand(25000, 4), torch.full((1, 4), 50.0)])  # one far outlier
    q, _ = convert(_probe_net(), wbits=32, abits=4)
    calibrate_activations(q, x, "mse")
    assert 1.0 < q[1].quant.hi.item() < 50.0 * 0.9


def test_calibration_chunks_give_the_same_ranges():
    x = images(40)
    q1, _ = convert(small_net(), 4, 4)
    q2, _ = convert(small_net(), 4, 4)
    calibrate_activations(q1, x, "dsg-avg", batch_size=256)
    calibrate_activations(q2, x, "dsg-avg", batch_size=7)
    for a, b in zip(act_quantizers(q1).values(), act_quantizers(q2).values()):
        assert a.hi.item() == pytest.approx(b.hi.item(), rel=1e-5)


def test_bad_calibration_data_raises_data_error():
    with pytest.raises(DataError, match="empty"):
        quantize_model(small_net(), torch.empty(0, 1, 12, 12), QuantConfig())
    with pytest.raises(DataError, match="expected \\[N, 1, H, W\\]"):
        quantize_model(small_net(), torch.randn(4, 3, 12, 12), QuantConfig())
    with pytest.raises(DataError, match="NaN"):
        quantize_model(small_net(), torch.full((4, 1, 12, 12), float("nan")), QuantConfig())
    with pytest.raises(DataError, match="overflow"):
        quantize_model(small_net(), torch.full((4, 1, 12, 12), 3e38), QuantConfig())
    with pytest.raises(DataError, match="do not fit"):
        quantize_model(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), torch.randn(4, 1, 5, 5), QuantConfig())


# ---------------------------------------------------------------- AdaRound / BRECQ

@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(8, 16, 3, 2, 1, bias=True), (10, 8, 9, 9)),
    (nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), (10, 8, 9, 9)),
    (nn.Conv2d(8, 8, 3, 1, 2, dilation=2, groups=2), (10, 8, 9, 9)),
    (nn.Linear(12, 5), (10, 12))])
def test_gram_loss_equals_direct_loss(layer, shape):
    torch.manual_seed(0)
    q = (QuantConv2d if isinstance(layer, nn.Conv2d) else QuantLinear).from_float(layer, 4)
    x = torch.randn(shape)
    target = torch.randn_like(q(x))
    with torch.no_grad():
        direct = _rec_loss(q(x), target)
        gram = GramLoss(q, x, target, chunk=3)(q.quantized_weight())
    assert gram.item() == pytest.approx(direct.item(), rel=1e-4)


def test_adaround_lowers_layer_reconstruction_error():
    torch.manual_seed(0)
    fp = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1)).eval()
    # correlated inputs: with white noise the loss is separable and nearest rounding is optimal
    x = F.avg_pool2d(torch.randn(32, 4, 12, 12), 3, stride=1) + 0.3 * torch.randn(32, 1, 10, 10)
    q, _ = convert(fp, wbits=3, abits=32)
    with torch.no_grad():
        nearest = (q(x) - fp(x)).pow(2).sum(1).mean().item()
    records = adaround(q, fp, x, ReconConfig(iters=200))
    with torch.no_grad():
        learned = (q(x) - fp(x)).pow(2).sum(1).mean().item()
    assert records[0]["loss_nearest"] == pytest.approx(nearest, rel=1e-5)
    assert learned < 0.8 * nearest
    # the baked weights sit on the same grid: nearest rounding reproduces them exactly
    assert torch.equal(q[0].quantized_weight(), q[0].weight)
    assert torch.unique(q[0].weight[0]).numel() <= 8


def test_brecq_blocks_and_reconstruction():
    fp, x = block_net(), images(32)
    q, _ = convert(fp, wbits=3, abits=4)
    calibrate_activations(q, x)
    assert find_blocks(q) == ["0", "2", "3", "6"]
    seen = []
    records = brecq(q, fp, x, ReconConfig(iters=40, batch_size=16), progress=seen.append)
    assert [r["unit"] for r in records] == ["0", "2", "3", "6"]
    assert records[1]["layers"] == ["2.conv1", "2.conv2"]
    assert all(r["loss_after"] <= r["loss_nearest"] for r in records)  # never worse than nearest
    assert all(r["loss_after"] < 0.95 * r["loss_nearest"] for r in records[1:3])  # blocks improve
    assert seen[-1].stage == "brecq" and seen[-1].step == seen[-1].total == 160


def test_brecq_falls_back_to_layers_for_multi_input_blocks():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.relu = nn.Conv2d(1, 4, 3), nn.ReLU()
            self.two, self.fc = TwoInputs(), nn.Linear(4, 3)

        def forward(self, x):
            x = self.relu(self.stem(x))
            return self.fc(self.two(x, x).mean((2, 3)))

    fp, x = Net().eval(), images(8)
    q = quantize_model(fp, x, QuantConfig(quantizer="brecq", recon_iters=5))
    assert [r["unit"] for r in q.quant_report.recon] == ["stem", "two.a", "two.b", "fc"]


def test_find_blocks_on_resnet20():
    from dsg_core.models import load_model
    q, _ = convert(load_model("resnet20_mnist", weights="random"))
    assert find_blocks(q) == ["conv1"] + [f"layers.{i}" for i in range(9)] + ["fc"]


def test_reconstruction_nan_keeps_last_good_state():
    fp = nn.Sequential(nn.Conv2d(2, 4, 3)).eval()
    q, _ = convert(fp, wbits=4, abits=32)
    bad = copy.deepcopy(fp)
    with torch.no_grad():
        bad[0].bias[0] = float("nan")
    w_before = q[0].quantized_weight().clone()
    with pytest.raises(NumericalError) as info:
        adaround(q, bad, torch.randn(8, 2, 6, 6), ReconConfig(iters=20))
    assert info.value.iteration == 1 and info.value.last_good is q
    assert torch.equal(q[0].quantized_weight(), w_before)  # nothing learned: nearest rounding kept
    assert torch.isfinite(q[0].weight).all()


def test_reconstruction_cancel_and_progress():
    fp, x = small_net(), images()
    seen = []
    with pytest.raises(Cancelled) as info:
        quantize_model(fp, x, QuantConfig(quantizer="adaround", recon_iters=30),
                       progress=seen.append, cancel=lambda: len(seen) >= 2)
    assert isinstance(info.value.partial, nn.Module)
    assert seen[0].stage == "adaround" and seen[0].total == 90 and seen[0].extra["unit"] == "0"


# ---------------------------------------------------------------- PTQ on the embedded model

def test_w8a8_resnet20_mnist_within_half_a_point_of_fp32():
    """Needs the trained checkpoint (scripts/train_embedded.py); fails loudly if it is missing."""
    from dsg_core.data import mnist_split
    from dsg_core.evaluate import evaluate_quantized
    from dsg_core.models import load_model
    model = load_model("resnet20_mnist")
    calib, _ = mnist_split("train")
    x, y = mnist_split("test")
    q = quantize_model(model, calib[:64], QuantConfig(wbits=8, abits=8))
    res = evaluate_quantized(model, q, x, y)
    assert res["fp32_top1"] > 95
    assert abs(res["quant_top1"] - res["fp32_top1"]) <= 0.5


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_inference_fake_quant_equals_torch_kernel(bits):
    """The no-gradient fast path gives exactly torch's per-tensor fake quantization, ties included."""
    torch.manual_seed(bits)
    x = torch.randn(4, 8, 5, 5) * 3
    scale, zp = qparams(x.min(), x.max(), bits)
    x[0, 0, 0, :3] = (torch.tensor([0.5, 1.5, -2.5]) - zp) * scale  # exact ties of the grid
    ref = torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zp.round().to(torch.int32).reshape(()),
                                                0, 2 ** bits - 1)
    with torch.no_grad():
        assert torch.equal(fake_quant(x, scale, zp, bits), ref)


def test_scaled_ranges_scale_every_calibrated_range_and_restore_them():
    from dsg_core.quant.jitter import scaled_ranges
    net = small_net()
    q = quantize_model(net, torch.randn(16, 1, 8, 8), QuantConfig(wbits=8, abits=4, quantizer="minmax"))
    before = {n: (float(a.lo), float(a.hi), float(a.scale)) for n, a in act_quantizers(q).items()}
    with scaled_ranges(q, 1.5):
        for n, a in act_quantizers(q).items():
            assert float(a.hi) == pytest.approx(1.5 * before[n][1])
            assert float(a.scale) == pytest.approx(1.5 * before[n][2])
    assert {n: (float(a.lo), float(a.hi), float(a.scale)) for n, a in act_quantizers(q).items()} == before
    first = next(iter(before))
    with scaled_ranges(q, 0.5, only=[first]):  # one range alone: the others stay as calibrated
        now = {n: float(a.hi) for n, a in act_quantizers(q).items()}
        assert now == pytest.approx({n: (0.5 if n == first else 1.0) * b[1] for n, b in before.items()})
    assert {n: (float(a.lo), float(a.hi), float(a.scale)) for n, a in act_quantizers(q).items()} == before
    with pytest.raises(ConfigError, match="> 0"):
        with scaled_ranges(q, 0.0):
            pass


def test_range_jitter_at_factor_one_is_the_plain_top1():
    from dsg_core.evaluate import evaluate_quantized
    from dsg_core.quant.jitter import range_jitter
    net = small_net()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    q = quantize_model(net, x[:16], QuantConfig(wbits=4, abits=3, quantizer="minmax"))
    accs = range_jitter(net, q, x, y, (0.5, 1.0, 2.0))
    assert list(accs) == [0.5, 1.0, 2.0] and all(0 <= v <= 100 for v in accs.values())
    assert accs[1.0] == pytest.approx(evaluate_quantized(net, q, x, y)["quant_top1"])
    no_labels = range_jitter(net, q, x, None, (1.0,))  # agreement with FP32 instead
    assert no_labels[1.0] == pytest.approx(100 * evaluate_quantized(net, q, x, None)["agreement"])
    # a known result is taken as given (the caller's plain evaluation), the other factors computed
    reused = range_jitter(net, q, x, y, (0.5, 1.0, 2.0), known={1.0: -1.0})
    assert reused[1.0] == -1.0 and reused[0.5] == accs[0.5] and reused[2.0] == accs[2.0]
