"""The engine on a CUDA GPU, against the CPU path. These run only where a GPU is present (a GPU
session, `scripts/gpu_check.sh`); elsewhere they are reported as skipped, never as passed."""

import json

import pytest
import torch

from dsg_core.cli import main
from dsg_core.generation import BNStats, GenerationConfig, generate
from dsg_core.generation.generator import Objective, fast_copy
from dsg_core.models import get_spec, load_model
from dsg_core.quant import QuantConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _loss_and_grad(model, x, objective):
    x = x.clone().requires_grad_(True)
    with BNStats(model, objective.targets.names) as st:
        loss = objective(x, model(x), *st.collect(), None)[0]
    (g,) = torch.autograd.grad(loss, x)
    return loss.detach().cpu(), g.cpu()


@pytest.fixture
def no_tf32():
    """Full float32 convolutions: cuDNN's default TF32 (10-bit mantissa) put 1.9% between the CPU's
    and the GPU's input gradient of mobilenetv2_mnist (an H200, 2026-11-26); generation itself keeps
    the default, whose rounding is far below what the losses resolve."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("name", ["resnet20_mnist", "mobilenetv2_mnist"])
def test_dsg_loss_and_gradient_match_the_cpu(name, no_tf32):
    """The GPU path (no channels-last, CUDA kernels) computes the same objective as the CPU's."""
    spec, model = get_spec(name), load_model(name)
    cfg = GenerationConfig(method="dsg")
    x = torch.randn(16, *spec.input_shape, generator=torch.Generator().manual_seed(1))
    cpu = _loss_and_grad(fast_copy(model, spec.input_shape, "cpu"), x,
                         Objective.build(model, spec.input_shape, cfg, "cpu"))
    gpu_model = load_model(name, device=CUDA)
    gpu = _loss_and_grad(fast_copy(gpu_model, spec.input_shape, CUDA), x.to(CUDA),
                         Objective.build(gpu_model, spec.input_shape, cfg, CUDA))
    assert torch.allclose(cpu[0], gpu[0], rtol=1e-3)
    assert (cpu[1] - gpu[1]).norm() <= 1e-3 * cpu[1].norm(), (cpu[1] - gpu[1]).norm() / cpu[1].norm()


def test_a_cpu_model_generates_on_the_gpu_with_its_bns_folded():
    """generate(device="cuda") with the model still on the CPU (what bench/speed.py does) works, and
    the fast copy is folded: the fold check runs on the CPU, where TF32 cannot blur it."""
    from dsg_core.generation.stats import FoldedBatchNorm
    spec, model = get_spec("mobilenetv2_mnist"), load_model("mobilenetv2_mnist")
    fast = fast_copy(model, spec.input_shape, CUDA)
    assert (next(fast.parameters()).device.type == CUDA.type
            and any(isinstance(m, FoldedBatchNorm) for m in fast.modules()))
    s = generate(model, spec.input_shape, GenerationConfig(samples=8, iterations=5), device=CUDA)
    assert torch.isfinite(s.images).all()


@pytest.mark.parametrize("kw", [dict(method="dsg"), dict(method="zeroq"),
                                dict(method="dsg", ce_weight=1.0, tv_weight=1e-4, jitter=2, init="uniform")])
def test_generation_on_the_gpu_lowers_the_loss_and_returns_cpu_images(kw):
    spec, model = get_spec("resnet20_mnist"), load_model("resnet20_mnist", device=CUDA)
    s = generate(model, spec.input_shape, GenerationConfig(samples=32, batch_size=16, iterations=60, **kw),
                 num_classes=10, device=CUDA)
    assert s.images.device.type == "cpu" and s.images.shape == (32, *spec.input_shape)
    assert torch.isfinite(s.images).all()
    assert s.history[-1]["loss"] < s.history[0]["loss"] / 3


def test_bf16_generation_on_the_gpu_stays_close_to_fp32():
    spec, model = get_spec("resnet20_mnist"), load_model("resnet20_mnist", device=CUDA)
    cfg = GenerationConfig(samples=16, batch_size=16, iterations=40)
    fp32, bf16 = (generate(model, spec.input_shape, cfg, device=CUDA, precision=p) for p in ("fp32", "bf16"))
    assert torch.isfinite(bf16.images).all()
    assert bf16.history[-1]["loss"] < bf16.history[0]["loss"] / 3
    assert abs(bf16.history[0]["loss"] - fp32.history[0]["loss"]) < 0.05 * fp32.history[0]["loss"]


@pytest.mark.parametrize("quantizer", ["minmax", "dsg-avg", "percentile", "mse", "adaround", "brecq"])
def test_quantization_on_the_gpu_matches_the_cpu(quantizer):
    """Same calibration images, same rule: top-1 on the GPU within a point of the CPU's."""
    from dsg_core.data import real_split
    from dsg_core.experiments import TestSet, quantize_and_evaluate
    test_x, test_y = real_split("resnet20_mnist", "test")
    calib = real_split("resnet20_mnist", "train")[0][:64]
    qcfg = QuantConfig(wbits=4, abits=4, quantizer=quantizer, recon_iters=40, seed=0)
    cpu_model, gpu_model = load_model("resnet20_mnist"), load_model("resnet20_mnist", device=CUDA)
    cpu = quantize_and_evaluate(cpu_model, calib, qcfg, TestSet.of(cpu_model, test_x, test_y))
    gpu = quantize_and_evaluate(gpu_model, calib.to(CUDA), qcfg,
                                TestSet.of(gpu_model, test_x.to(CUDA), test_y.to(CUDA)))
    assert abs(cpu["fp32_top1"] - gpu["fp32_top1"]) <= 0.2
    assert abs(cpu["quant_top1"] - gpu["quant_top1"]) <= 1.0, (cpu, gpu)


def test_cli_generate_diagnose_quantize_with_device_cuda(tmp_path, capsys):
    out = tmp_path / "set.safetensors"
    assert main(["generate", "--device", "cuda", "--method", "dsg", "--samples", "32", "--iterations", "50",
                 "--out", str(out), "--json", "--quiet"]) == 0
    gen = json.loads(capsys.readouterr().out)
    assert gen["final_loss"] < gen["first_loss"]
    assert main(["diagnose", "--device", "cuda", "--samples", str(out), "--json"]) == 0
    diag = json.loads(capsys.readouterr().out)
    assert 0 < diag["stat_spread_ratio"] and diag["frechet_distance"] >= 0
    assert main(["quantize", "--device", "cuda", "--calib", str(out), "--wbits", "8", "--abits", "8",
                 "--quantizer", "minmax", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["quant_top1"] >= q["fp32_top1"] - 1.0


def test_cli_qat_with_device_cuda(capsys):
    assert main(["qat", "--device", "cuda", "--wbits", "4", "--abits", "4", "--epochs", "1", "--warmup-epochs", "0",
                 "--iters-per-epoch", "5", "--json", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 <= res["quant_top1"] <= 100
