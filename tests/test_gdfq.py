"""Generative data-free QAT (GDFQ framework, DSG generator terms): losses, generator, training loop,
checkpoints, config errors and the CLI contract. About a minute on one thread."""

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch

from dsg_core.cli import main
from dsg_core.errors import Cancelled, ConfigError, ModelError, NumericalError
from dsg_core.gdfq import (
    ConditionalGenerator,
    GeneratorLoss,
    GeneratorObjective,
    QATConfig,
    batch_stats,
    group_stats,
    kd_loss,
    qat,
    sda_reference,
    train_qat,
)
from dsg_core.gdfq.batches import GeneratedBatches
from dsg_core.generation import bn_targets, losses
from dsg_core.generation.stats import sample_stats
from dsg_core.models import get_spec, load_model


@pytest.fixture(autouse=True, scope="module")
def honour_omp_threads():
    """conftest sets 2 threads; these are the suite's heaviest tests, and on a busy 2-core machine two
    threads per process oversubscribe it (measured 4.0 s vs 0.7 s per generator step), so an explicit
    OMP_NUM_THREADS wins here. Restored afterwards."""
    before = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(max(1, int(os.environ["OMP_NUM_THREADS"])))
    yield
    torch.set_num_threads(before)


TINY = SimpleNamespace(name="tiny", input_shape=(1, 8, 8), num_classes=10)


def tiny_data(n: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n, 1, 8, 8), generator=gen), torch.randint(0, 10, (n,), generator=gen)


# ------------------------------------------------------------------------------------------ losses
def test_kd_loss_matches_hand_values():
    # T=1: p_t = softmax([ln 3, 0]) = [3/4, 1/4], p_s = [1/2, 1/2];
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3), 0.0]])
    assert kd_loss(s, t, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    assert kd_loss(s, t, 1.0).item() == pytest.approx(0.130812, abs=1e-6)
    # T=2: p_t = [sqrt3, 1] / (sqrt3 + 1) = [0.633975, 0.366025]; T^2 KL = 4 * 0.036341 = 0.145363
    assert kd_loss(s, t, 2.0).item() == pytest.approx(0.145363, abs=1e-6)
    # batch mean: a second row where student == teacher contributes 0
    s2, t2 = torch.cat([s, torch.tensor([[1.0, 2.0]])]), torch.cat([t, torch.tensor([[1.0, 2.0]])])
    assert kd_loss(s2, t2, 1.0).item() == pytest.approx(0.130812 / 2, abs=1e-6)
    # KL is not symmetric: the teacher is the reference distribution
    assert kd_loss(t, s, 1.0).item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2), abs=1e-6)


def test_batch_and_group_stats_equal_direct_computation():
    x = torch.randn(12, 3, 5, 5) * 2 + 1
    mean, std = sample_stats(x)
    bm, bs = batch_stats(mean, std)
    var, mu = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    assert torch.allclose(bm[0], mu, atol=1e-5) and torch.allclose(bs[0], (var + 1e-5).sqrt(), atol=1e-4)
    gm, gs = group_stats(mean, std, 3)
    for g in range(3):  # sample j is in group j mod 3
        var, mu = torch.var_mean(x[g::3], dim=(0, 2, 3), correction=0)
        assert torch.allclose(gm[g], mu, atol=1e-5) and torch.allclose(gs[g], (var + 1e-5).sqrt(), atol=1e-4)


def test_sda_hinge_gives_slack_reference_form_does_not(tiny_net):
    t = bn_targets(tiny_net)
    delta = gamma = torch.full_like(t.mu, 0.5)
    inside = (t.mu + 0.2).unsqueeze(0), (t.sigma - 0.2).unsqueeze(0)   # every gap 0.2 < margin 0.5
    assert losses.sda(*inside, t, delta, gamma).sum() == 0
    assert torch.allclose(sda_reference(*inside, t, delta, gamma).sum(), torch.tensor(2 * 0.3 ** 2 * t.mu.numel()))
    outside = (t.mu + 0.7).unsqueeze(0), t.sigma.unsqueeze(0)           # mean gap 0.7: 0.2 past the margin
    ref = sda_reference(*outside, t, delta, gamma).sum()             # + (0 - 0.5)^2 for the std gap
    assert torch.allclose(losses.sda(*outside, t, delta, gamma).sum(), torch.tensor(0.2 ** 2 * t.mu.numel()))
    assert torch.allclose(ref, torch.tensor((0.2 ** 2 + 0.5 ** 2) * t.mu.numel()))


def test_lse_on_batch_statistics_adds_only_the_owned_layers(tiny_net):
    t = bn_targets(tiny_net)
    mean, std = sample_stats(torch.randn(16, 10, 3, 3))  # fake statistics of 16 samples at both layers
    plain = GeneratorObjective(tiny_net, TINY.input_shape, 16, GeneratorLoss(), t)
    lse = GeneratorObjective(tiny_net, TINY.input_shape, 16, GeneratorLoss(lse=True, lse_weight=3.0), t)
    assert lse.groups == 2 and lse.extra.tolist() == [[2.0, 0.0], [0.0, 2.0]]  # group g owns layer g
    gm, gs = group_stats(mean, std, 2)
    per_group = losses.bn_l2(gm, gs, t)                                 # (G, N)
    extra = 2.0 * (per_group[0, 0] + per_group[1, 1]) / 2
    assert torch.allclose(lse.bn_loss(mean, std), plain.bn_loss(mean, std) + extra)
    with pytest.raises(ConfigError, match="too small"):
        GeneratorObjective(tiny_net, TINY.input_shape, 4, GeneratorLoss(lse=True), t)


# ------------------------------------------------------------------------------------------ generator
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 30, 30), (3, 224, 224)])
def test_generator_output_shape_and_input_statistics(shape):
    g = ConditionalGenerator(shape, num_classes=10, width=32)
    z, y = g.sample(4, torch.Generator().manual_seed(0))
    x = g(z, y)
    assert x.shape == (4, *shape)
    # the last BN (no affine) puts every channel at mean 0 / variance 1 over the batch: normalized inputs
    var, mu = torch.var_mean(x.detach(), dim=(0, 2, 3), correction=0)
    assert torch.allclose(mu, torch.zeros_like(mu), atol=1e-4) and torch.allclose(var, torch.ones_like(var), atol=1e-2)


def train_generator(model, shape, loss: GeneratorLoss, steps: int, batch: int = 16, lr: float = 1e-3) -> list[dict]:
    model = model.eval().requires_grad_(False)
    t = bn_targets(model)
    torch.manual_seed(0)
    g = ConditionalGenerator(shape, 10, latent_dim=16 if shape[-1] < 28 else 100, width=16 if shape[-1] < 28 else 64)
    src = GeneratedBatches(g, model, GeneratorObjective(model, shape, batch, loss, t), lr, batch, 0)
    return [src.next(step)[1] for step in range(steps)]


def test_generator_bn_loss_falls_on_the_default_model():
    # GDFQ's objective (CE + 0.1 L_BN on batch statistics); measured: mean of the first 10 steps 0.34,
    # of the last 10 0.23 (and 0.04 after 150 steps)
    parts = train_generator(load_model("resnet20_mnist"), (1, 28, 28), GeneratorLoss(), 40, batch=32)
    bn = [p["g_bn"] for p in parts]
    assert sum(bn[-10:]) < 0.8 * sum(bn[:10]), bn
    assert sum(p["g_ce"] for p in parts[-10:]) < sum(p["g_ce"] for p in parts[:10])


def test_dsg_generator_terms_train(tiny_net):
    # the SDA margins (Gaussian-gap quantiles) hold the tiny net's batch statistics from the start, so the
    # hinge is ~0 throughout (as the PTQ probe found); SCI is what moves: measured 0.37 -> 0.10
    parts = train_generator(tiny_net, TINY.input_shape, GeneratorLoss(sda=True, lse=True, sci=True), 60, lr=1e-2)
    assert all(p["g_bn"] < 1e-3 for p in parts)
    assert sum(p["g_sci"] for p in parts[-10:]) < 0.5 * sum(p["g_sci"] for p in parts[:10])


# ------------------------------------------------------------------------------------------ QAT
def tiny_qat(tiny_net, checkpoint=None, cancel=None, progress=None, **kw):
    cfg = QATConfig(**{"generator": "gdfq", "epochs": 1, "iters_per_epoch": 3, "batch_size": 8, "warmup_epochs": 1,
                       "latent_dim": 8, "generator_width": 8, "calib_samples": 16, **kw})
    return train_qat(tiny_net, TINY, cfg, train_data=tiny_data(64, 1), test_data=tiny_data(64, 2),
                     checkpoint=checkpoint, cancel=cancel, progress=progress)


def stop_after(steps: int):
    calls = []
    return lambda: calls.append(1) or len(calls) > steps


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tiny_net, tmp_path):
    ckpt = tmp_path / "qat.pt"
    with pytest.raises(Cancelled):  # 3 warmup + 3 QAT steps done, cancelled in the second QAT epoch
        tiny_qat(tiny_net, ckpt, cancel=stop_after(7), epochs=2)
    saved = torch.load(ckpt, weights_only=True)   # plain tensors and state dicts only
    assert saved["epoch"] == 2 and [c["epoch"] for c in saved["curve"]] == [0, 1]
    resumed = tiny_qat(tiny_net, ckpt, epochs=2)
    straight = tiny_qat(tiny_net, None, epochs=2)
    assert resumed.resumed_from == 2 and straight.resumed_from == 0
    assert resumed.curve == straight.curve
    for (name, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(resumed.generator.state_dict().values(), straight.generator.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_extends_a_finished_run_and_refuses_other_settings(tiny_net, tmp_path):
    ckpt = tmp_path / "qat.pt"
    first = tiny_qat(tiny_net, ckpt, epochs=1)
    longer = tiny_qat(tiny_net, ckpt, epochs=2)   # the cosine schedule is laid out for the new total
    assert longer.resumed_from == 2 and [c["epoch"] for c in longer.curve] == [0, 1, 2]
    assert longer.curve[:2] == first.curve
    with pytest.raises(ConfigError, match="wbits"):
        tiny_qat(tiny_net, ckpt, epochs=2, wbits=3)
    with pytest.raises(ConfigError, match="already trained 2 QAT epochs"):
        tiny_qat(tiny_net, ckpt, epochs=1)


def test_progress_reports_steps_curve_and_samples(tiny_net):
    records = []
    res = tiny_qat(tiny_net, progress=records.append)
    steps = [p for p in records if p.parts]
    assert [p.step for p in steps] == list(range(1, 7)) and all(p.total == 6 for p in records)
    assert {"g_loss", "g_ce", "g_bn"} <= set(steps[0].parts) and {"loss", "kd", "ce"} <= set(steps[-1].parts)
    ends = [p.extra for p in records if "curve" in p.extra]
    assert [e["epoch"] for e in ends] == [1, 2] and ends[-1]["curve"] == res.curve
    assert ends[0]["samples"].shape == (10, 1, 8, 8) and ends[0]["labels"].tolist() == list(range(10))


def test_real_mode_needs_no_generator(tiny_net):
    res = tiny_qat(tiny_net, generator="real")
    assert res.generator is None and len(res.curve) == 2 and res.config["generator"] == "real"


def test_cancel_nan_and_broken_models_are_reported(tiny_net, monkeypatch):
    with pytest.raises(Cancelled):
        tiny_qat(tiny_net, cancel=lambda: True)
    nan = torch.tensor(float("nan"))
    with monkeypatch.context() as m:  # a loss that turns NaN mid-run, in the generator or the quantized model
        m.setattr(GeneratorObjective, "bn_loss", lambda self, mean, std: nan)
        with pytest.raises(NumericalError, match="generator's loss"):
            tiny_qat(tiny_net)
    with monkeypatch.context() as m:
        m.setattr(qat, "kd_loss", lambda *a: nan)
        with pytest.raises(NumericalError, match="quantized model's loss"):
            tiny_qat(tiny_net)
    with torch.no_grad():
        tiny_net.fc.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        tiny_qat(tiny_net)


@pytest.mark.parametrize("kw, msg", [({"wbits": 9}, "wbits"), ({"generator": "magic"}, "generator"),
                                     ({"epochs": 0}, "epochs"), ({"batch_size": 1}, "batch_size"),
                                     ({"warmup_epochs": -1}, "warmup"), ({"epsilon": 0.0}, "epsilon"),
                                     ({"lse_weight": 0.5}, "LSE"), ({"model_lr": 0.0}, "model_lr"),
                                     ({"kd_weight": 0.0, "ce_weight": 0.0}, "nothing to learn"),
                                     ({"calibrator": "mse"}, "calibrator"), ({"sda_mode": "abs"}, "sda_mode"),
                                     ({"range_momentum": 1.5}, "range_momentum"),
                                     ({"generator_cond": "add"}, "generator_cond"),
                                     ({"sci_weight": float("nan")}, "sci_weight")])
def test_bad_configs_get_clear_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        QATConfig(**kw).validate()


# ------------------------------------------------------------------------------------------ default model
@pytest.fixture(scope="module")
def default_w4a4():
    """A short GDFQ-generator QAT run at W4A4 on the default model (~30 s on one thread)."""
    name = "resnet20_mnist"
    cfg = QATConfig(generator="gdfq", wbits=4, abits=4, epochs=1, iters_per_epoch=20, warmup_epochs=1,
                    eval_samples=500)
    return train_qat(load_model(name), get_spec(name), cfg)


def test_short_qat_on_the_default_model(default_w4a4):
    r = default_w4a4
    assert r.fp32_top1 > 98 and len(r.curve) == 2 and r.curve[0]["quant_top1"] == r.ptq_top1
    # W4A4 min/max PTQ on 64 generated samples sits on a cliff: a rounding-level change in how the BN
    # statistics are summed moved it from 99.2 to 70.2 (seed 0, 1 and 2 threads), while 20 QAT steps
    # ended at 98.6-99.2 either way. So: QAT lands near FP32, and never loses more than a point.
    # Where PTQ leaves room (W2A4: 92.5 -> 97.4, real-data W3A3: 87.2 -> 98.9) QAT gains; see docs/qat.md.
    assert r.quant_top1 > 97, r.curve
    assert r.quant_top1 >= r.ptq_top1 - 1.0, r.curve


def test_cli_qat_json(capsys, tmp_path):
    code = main(["qat", "--generator", "dsg", "--epochs", "1", "--iters-per-epoch", "2", "--warmup-epochs", "1",
                 "--batch-size", "8", "--eval-samples", "100", "--checkpoint", str(tmp_path / "c.pt"), "--json",
                 "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("fp32_top1", "ptq_top1", "quant_top1", "curve", "seconds", "config", "resumed_from"):
        assert key in out, key
    assert out["generator"] == "dsg" and [c["epoch"] for c in out["curve"]] == [0, 1]
    assert all(0 <= c["quant_top1"] <= 100 for c in out["curve"]) and (tmp_path / "c.pt").exists()
    code = main(["qat", "--wbits", "9", "--json"])
    assert code == 2 and "wbits" in capsys.readouterr().err
