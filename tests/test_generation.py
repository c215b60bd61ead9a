"""Generator behaviour on a tiny BN net: hooks, margins, determinism, errors, save/load."""

import math

import pytest
import torch
import torch.nn as nn

from dsg_core.errors import Cancelled, ConfigError, DataError, ModelError, NumericalError
from dsg_core.generation import BNStats, GenerationConfig, SyntheticSet, bn_targets, compute_margins, generate, preset
from dsg_core.generation.stats import bn_layers, sample_stats

SHAPE = (1, 8, 8)


def run(net, **kw):
    cfg = GenerationConfig(**{"samples": 8, "batch_size": 8, "iterations": 5, **kw})
    return generate(net, SHAPE, cfg, model_name="tiny", num_classes=10)


def test_hooks_give_per_sample_stats_of_every_bn_layer(tiny_net):
    x = torch.randn(5, *SHAPE)
    with BNStats(tiny_net) as st:
        tiny_net(x)
        mean, std = st.collect()
    assert mean.shape == std.shape == (5, 4 + 6)
    pre_bn1 = tiny_net.conv1(x)
    assert torch.allclose(mean[:, :4], pre_bn1.mean((2, 3)), atol=1e-6)
    assert torch.allclose(std[:, :4], (pre_bn1.var((2, 3), correction=0) + 1e-5).sqrt(), atol=1e-6)


def test_hooks_removed_after_context(tiny_net):
    with BNStats(tiny_net):
        pass
    assert all(not m._forward_pre_hooks for m in tiny_net.modules())


def test_sample_stats_vectorized_matches_loop():
    x = torch.randn(3, 2, 5, 5)
    m, s = sample_stats(x)
    for b in range(3):
        for c in range(2):
            assert torch.isclose(m[b, c], x[b, c].mean(), atol=1e-6)
            assert torch.isclose(s[b, c], (x[b, c].var(correction=0) + 1e-5).sqrt(), atol=1e-6)


def test_margins_are_the_epsilon_quantile_of_gaussian_gaps(tiny_net):
    t = bn_targets(tiny_net)
    m = compute_margins(tiny_net, t, SHAPE, 0.9, n=64, seed=3)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn((64, *SHAPE), generator=gen)
    with torch.no_grad(), BNStats(tiny_net) as st:
        tiny_net(noise)
        mean, _ = st.collect()
    gaps = (mean[:, :4] - t.mu[:4]).abs()
    assert torch.isclose(m.delta[0], torch.quantile(gaps.flatten(), 0.9))
    assert (m.delta > 0).all() and (m.gamma > 0).all()
    # larger epsilon -> wider margins
    wide = compute_margins(tiny_net, t, SHAPE, 1.0, n=64, seed=3)
    assert (wide.delta >= m.delta).all()


def test_model_without_bn_is_refused_with_reason():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 10))
    with pytest.raises(ModelError, match="no BatchNorm"):
        generate(net, SHAPE, GenerationConfig(samples=2, iterations=1))


def test_bn_without_running_statistics_is_refused_with_reason():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Flatten(),
                        nn.Linear(144, 10)).eval()
    with pytest.raises(ModelError, match="running statistics"):
        generate(net, SHAPE, GenerationConfig(samples=2, iterations=1))


@pytest.mark.parametrize("kw, msg", [({"epsilon": 0.0}, "epsilon"), ({"epsilon": 1.5}, "epsilon"),
                                     ({"iterations": 0}, "iterations"), ({"samples": -1}, "samples"),
                                     ({"method": "magic"}, "method"), ({"lse_weight": 0.5}, "LSE"),
                                     ({"sci_weight": float("nan")}, "sci_weight")])
def test_bad_configs_get_clear_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        GenerationConfig(**kw).validate()


def test_deterministic_for_a_seed(tiny_net):
    a, b = run(tiny_net, seed=4), run(tiny_net, seed=4)
    c = run(tiny_net, seed=5)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_batches_cover_samples_and_last_batch_smaller(tiny_net):
    s = run(tiny_net, samples=11, batch_size=4, iterations=2)
    assert s.images.shape == (11, *SHAPE)
    assert len(s.history) == 3 * 2


def test_history_and_progress_report_components(tiny_net):
    seen = []
    cfg = GenerationConfig(samples=4, batch_size=4, iterations=3, ce_weight=1.0, tv_weight=0.1, l2_weight=0.1)
    s = generate(tiny_net, SHAPE, cfg, num_classes=10, progress=seen.append)
    assert [p.step for p in seen] == [1, 2, 3] and seen[-1].total == 3
    assert set(seen[0].parts) == {"bn", "input", "sci", "ce", "tv", "l2"}
    assert len(seen[0].extra["layer_loss"]) == 2
    assert s.targets is not None and s.targets.shape == (4,)
    assert math.isclose(s.history[0]["loss"], sum(s.history[0][k] for k in seen[0].parts), rel_tol=1e-5)


def test_zeroq_has_no_dsg_parts(tiny_net):
    s = run(tiny_net, method="zeroq")
    assert set(s.history[0]) == {"batch", "iteration", "loss", "bn", "input"}
    assert s.delta is None


def test_gaussian_is_plain_noise(tiny_net):
    s = run(tiny_net, method="gaussian")
    assert s.history == [] and s.images.shape == (8, *SHAPE)


def test_cancel_stops_with_partial_result(tiny_net):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled) as err:
        generate(tiny_net, SHAPE, GenerationConfig(samples=4, batch_size=4, iterations=50), cancel=cancel)
    assert err.value.partial is not None


class NaNAfter(nn.Module):
    """Returns NaN after ``n`` forwards with grad (a model that blows up mid-run). Set-up passes (BN
    probe, margins, memory estimate) run without grad and are not counted; the fast copy's check
    (``fast_copy``) runs one gradient pass on the copy, which is."""

    def __init__(self, net, n):
        super().__init__()
        self.net, self.n, self.calls = net, n, 0

    def forward(self, x):
        self.calls += torch.is_grad_enabled()
        out = self.net(x)
        return out * float("nan") if self.calls > self.n else out


def test_nan_stops_and_keeps_last_good_images(tiny_net):
    net = NaNAfter(tiny_net, n=2)  # the fold check's pass + one good iteration
    cfg = GenerationConfig(samples=4, batch_size=4, iterations=10, ce_weight=1.0)
    with pytest.raises(NumericalError, match="iteration") as err:
        generate(net, SHAPE, cfg, num_classes=10)
    assert err.value.iteration == 2  # one good iteration, then NaN
    assert err.value.last_good.shape == (4, *SHAPE) and torch.isfinite(err.value.last_good).all()


def test_save_load_round_trip(tmp_path, tiny_net):
    s = run(tiny_net, ce_weight=1.0)
    path = s.save(tmp_path / "set.safetensors")
    back = SyntheticSet.load(path)
    assert torch.equal(back.images, s.images) and torch.equal(back.targets, s.targets)
    assert torch.equal(back.delta, s.delta) and back.config == s.config and back.history == s.history
    assert back.label == "DSG (SDA+LSE+SCI) + priors"


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a tensor file at all")
    with pytest.raises(DataError, match="not a DSG synthetic set"):
        SyntheticSet.load(bad)
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(DataError, match="not a DSG synthetic set"):
        SyntheticSet.load(tmp_path / "w.safetensors")
    with pytest.raises(DataError, match="not found"):
        SyntheticSet.load(tmp_path / "missing.safetensors")


def test_exports_png_grid_zip_and_weights_only_pt(tmp_path, tiny_net):
    import io
    import zipfile
    s = run(tiny_net, ce_weight=1.0)
    assert s.png_grid((0.5,), (0.5,))[:4] == b"\x89PNG"
    with zipfile.ZipFile(io.BytesIO(s.png_zip((0.5,), (0.5,)))) as zf:
        assert len(zf.namelist()) == 8
    obj = torch.load(io.BytesIO(s.to_pt_bytes()), weights_only=True)
    assert torch.equal(obj["images"], s.images)


def test_presets():
    assert preset("paper") == GenerationConfig()
    ref = preset("reference", image_size=224)
    assert ref.jitter == 30 and ref.init == "uniform" and ref.ce_weight == 2.0  # tests/test_baselines.py: the rest
    with pytest.raises(ConfigError):
        preset("nope")


def test_fast_stats_match_reference_values_and_gradients():
    from dsg_core.generation.stats import sample_stats_reference
    torch.manual_seed(0)
    x = (torch.randn(6, 5, 7, 9, dtype=torch.float64) * 3 + 2).requires_grad_(True)
    w1, w2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    grads = []
    for fn in (sample_stats, sample_stats_reference):
        m, s = fn(x)
        (g,) = torch.autograd.grad((m * w1).sum() + (s * w2).sum(), x)
        grads.append((m.detach(), s.detach(), g))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    x32 = x.detach().float()
    assert torch.allclose(sample_stats(x32)[1], sample_stats_reference(x32)[1], rtol=1e-4)


def _inputs_of_bns(model, x):
    """Each BN layer's input, captured by a plain hook (the straightforward reference)."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, a: seen.append(a[0])) for _, m in bn_layers(model)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("fold", [False, True])
def test_collect_matches_reference_values_and_gradients(tiny_net, fold):
    """BNStats.collect (raw sums per layer, one vectorized step for all layers, folded BNs mapped back
    to their input) gives the values and input gradient of var_mean on each BN input."""
    from dsg_core.generation.generator import fast_copy
    from dsg_core.generation.stats import sample_stats_reference
    net = tiny_net.double()
    model = fast_copy(net, SHAPE, "cpu") if fold else net
    x = torch.randn(5, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    w = torch.randn(2, 5, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with BNStats(model) as st:
        model(x)
        mean, std = st.collect()
    ref = [sample_stats_reference(t, BNStats.eps) for t in _inputs_of_bns(net, x)]
    ref_mean, ref_std = torch.cat([m for m, _ in ref], 1), torch.cat([s for _, s in ref], 1)
    assert torch.allclose(mean, ref_mean, atol=1e-9) and torch.allclose(std, ref_std, atol=1e-9)
    g, = torch.autograd.grad((mean * w[0]).sum() + (std * w[1]).sum(), x)
    g_ref, = torch.autograd.grad((ref_mean * w[0]).sum() + (ref_std * w[1]).sum(), x)
    assert torch.allclose(g, g_ref, rtol=1e-7, atol=1e-9)


def test_retain_freed_memory_takes_on_glibc_and_is_idempotent():
    import platform

    from dsg_core.resources import retain_freed_memory
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are a glibc setting")
    assert retain_freed_memory() is True and retain_freed_memory() is True


@pytest.mark.parametrize("schedule", ["plateau", "cosine", "constant"])
def test_schedules(tiny_net, schedule):
    seen = []
    cfg = GenerationConfig(samples=4, batch_size=4, iterations=4, schedule=schedule)
    generate(tiny_net, SHAPE, cfg, progress=seen.append)
    lrs = [p.extra["lr"] for p in seen]
    assert (lrs[-1] < lrs[0]) == (schedule == "cosine")


def _loss_and_grad(model, x, objective):
    x = x.clone().requires_grad_(True)
    with BNStats(model, objective.targets.names) as st:
        logits = model(x)
        loss = objective(x, logits, *st.collect(), None)[0]
    (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g


@pytest.mark.parametrize("name", ["resnet20_mnist", "mobilenetv2_mnist"])
def test_fast_copy_gives_the_same_loss_and_gradient(name):
    """BN folding + channels-last is a speed-up only: DSG's loss and its gradient are unchanged."""
    from dsg_core.generation.generator import Objective, fast_copy
    from dsg_core.generation.stats import FoldedBatchNorm
    from dsg_core.models import bn_layer_names, get_spec, load_model
    spec, model = get_spec(name), load_model(name)
    fast = fast_copy(model, spec.input_shape, "cpu")
    assert sum(isinstance(m, FoldedBatchNorm) for m in fast.modules()) == len(bn_layer_names(model))
    objective = Objective.build(model, spec.input_shape, GenerationConfig(method="dsg"), "cpu")
    x = torch.randn(16, *spec.input_shape, generator=torch.Generator().manual_seed(1))
    (l1, g1), (l2, g2) = _loss_and_grad(model, x, objective), _loss_and_grad(fast, x, objective)
    assert torch.allclose(l1, l2, rtol=1e-4)
    assert torch.allclose(g1, g2, rtol=1e-3, atol=1e-3 * g1.abs().max().item())
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is untouched


class _BNAfterReLU(nn.Module):
    """BN registered right after a conv but applied after a ReLU: folding it would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.bn(torch.relu(self.conv(x))).mean((2, 3)))


def test_fast_copy_does_not_fold_a_bn_that_does_not_follow_its_conv():
    from dsg_core.generation.generator import Objective, fast_copy
    from dsg_core.generation.stats import FoldedBatchNorm
    torch.manual_seed(0)
    net = _BNAfterReLU().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(0.1, 0.5)
        net.bn.weight.uniform_(0.5, 2.0)
    fast = fast_copy(net, SHAPE, "cpu")
    assert not any(isinstance(m, FoldedBatchNorm) for m in fast.modules())
    objective = Objective.build(net, SHAPE, GenerationConfig(method="dsg"), "cpu")
    x = torch.randn(8, *SHAPE)
    assert torch.allclose(_loss_and_grad(net, x, objective)[0], _loss_and_grad(fast, x, objective)[0])


def test_bf16_mixed_precision_runs_and_matches_fp32_closely(tiny_net):
    cfg = GenerationConfig(samples=8, batch_size=8, iterations=30)
    fp32 = generate(tiny_net, SHAPE, cfg)
    bf16 = generate(tiny_net, SHAPE, cfg, precision="bf16")
    assert torch.isfinite(bf16.images).all() and bf16.images.dtype == torch.float32
    assert bf16.history[-1]["bn"] < 0.5 * bf16.history[0]["bn"]  # it still optimizes
    # same seed and init: bfloat16 rounding moves the images a little, not a lot
    assert (bf16.images - fp32.images).abs().mean() < 0.2 * fp32.images.abs().mean()


def test_float16_is_refused_with_the_reason(tiny_net):
    with pytest.raises(ConfigError, match="underflow"):
        generate(tiny_net, SHAPE, GenerationConfig(samples=2, batch_size=2, iterations=1), precision="fp16")


def test_auto_batch_size_fits_the_free_memory(monkeypatch, tiny_net):
    from dsg_core import resources
    per_sample = resources.estimate_generation_bytes(tiny_net, SHAPE, 1)
    monkeypatch.setattr(resources, "available_bytes", lambda _d: int(10.5 * per_sample / 0.8))
    assert resources.fit_batch_size(tiny_net, SHAPE, 64, "cpu") == 10
    assert resources.fit_batch_size(tiny_net, SHAPE, 4, "cpu") == 4
    monkeypatch.setattr(resources, "available_bytes", lambda _d: per_sample // 2)
    with pytest.raises(ConfigError, match="GiB"):
        resources.fit_batch_size(tiny_net, SHAPE, 64, "cpu")


class _InplaceAfterBN(nn.Module):
    """A functional in-place ReLU right after a BN (torchvision's Inception does this)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 10)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.fc(torch.relu_(self.bn(self.conv(x))).mean((2, 3)))


class _InplaceModuleAfterBN(_InplaceAfterBN):
    """nn.ReLU(inplace=True) after a BN (torchvision's ResNets and MobileNets)."""

    def forward(self, x):
        return self.fc(self.act(self.bn(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("functional", [False, True])
def test_fast_copy_with_inplace_relu_after_bn(functional):
    """nn.ReLU(inplace=True) is made out-of-place in the copy; an in-place functional op is caught
    by the check and the folded BN copies its output: generation works either way."""
    from dsg_core.generation.generator import fast_copy
    from dsg_core.generation.stats import FoldedBatchNorm
    torch.manual_seed(0)
    net = (_InplaceAfterBN() if functional else _InplaceModuleAfterBN()).eval()
    fast = fast_copy(net, SHAPE, "cpu")
    folded = [m for m in fast.modules() if isinstance(m, FoldedBatchNorm)]
    assert len(folded) == 1 and folded[0].copy_output == functional
    out = generate(net, SHAPE, GenerationConfig(samples=4, batch_size=4, iterations=3))
    assert torch.isfinite(out.images).all()


def test_torchvision_resnet18_folds_and_generates():
    """torchvision's ReLU(inplace=True) after every BN: folded, made out-of-place, one step runs."""
    from dsg_core.generation.generator import fast_copy
    from dsg_core.generation.stats import FoldedBatchNorm
    from dsg_core.models import load_model
    net = load_model("resnet18", weights="random")
    shape = (3, 64, 64)  # any size: timing-free check of the structure
    fast = fast_copy(net, shape, "cpu")
    assert sum(isinstance(m, FoldedBatchNorm) for m in fast.modules()) == 20
    out = generate(net, shape, GenerationConfig(samples=2, batch_size=2, iterations=1, margin_samples=4))
    assert torch.isfinite(out.images).all()


def test_image_adam_steps_exactly_like_torch_optim_adam():
    from dsg_core.generation.optim import ImageAdam
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(4, 1, 6, 6, generator=gen)
    x0 = torch.randn(4, 1, 6, 6, generator=gen)
    xs = [x0.clone().requires_grad_(True) for _ in range(2)]
    ours, ref = ImageAdam(xs[0], 0.3), torch.optim.Adam([xs[1]], lr=0.3)
    for t in range(25):
        for x in xs:
            x.grad = None
            ((x - target) ** 2 * (1 + t % 3)).sum().backward()
        ours.step(), ref.step()
        if t == 10:
            ours.lr = ref.param_groups[0]["lr"] = 0.03
    assert torch.equal(xs[0], xs[1])


def test_schedules_follow_torch_reduce_on_plateau_and_cosine():
    from dsg_core.generation.optim import Cosine, ImageAdam, Plateau
    losses_seq = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    x = torch.zeros(1, requires_grad=True)
    for patience in (0, 1, 2, 3):
        ref_opt = torch.optim.Adam([x], lr=0.5)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, patience=patience)
        ours = Plateau(ImageAdam(x, 0.5), patience)
        for v in losses_seq:
            ref.step(v), ours.step(v)
            assert ours.opt.lr == ref_opt.param_groups[0]["lr"], (patience, v)
    ref_opt = torch.optim.Adam([x], lr=0.5)
    ref, ours = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=20), Cosine(ImageAdam(x, 0.5), 20)
    for _ in range(20):
        ref_opt.step(), ref.step(), ours.step()
        assert ours.opt.lr == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)


def test_a_fresh_process_generates_without_importing_torch_dynamo(tmp_path):
    """The point of generation/optim.py: no 2-3 s torch._dynamo import in each CLI call or job."""
    import subprocess
    import sys
    code = ("import sys; from dsg_core.cli import main; "
            "main(['generate', '--samples', '4', '--iterations', '3', '--out', sys.argv[1], '--quiet']); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.safetensors")], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


# ---- pixel range (issue: diversity or pixel range?) ----------------------------------------------
VALID = ((-0.5,), (1.5,))


@pytest.mark.parametrize("method", ["dsg", "zeroq", "gaussian"])
def test_clip_and_clamp_after_keep_every_pixel_in_the_valid_range(tiny_net, method):
    free = generate(tiny_net, SHAPE, GenerationConfig(method=method, samples=8, batch_size=8, iterations=5, seed=1),
                    num_classes=10)
    assert free.images.min() < -0.5 or free.images.max() > 1.5  # the control: unbounded sets leave the range
    for mode in ("clip", "clamp-after"):
        cfg = GenerationConfig(method=method, samples=8, batch_size=8, iterations=5, seed=1, pixel_range=mode)
        s = generate(tiny_net, SHAPE, cfg, num_classes=10, valid_range=VALID)
        assert s.images.min() >= -0.5 and s.images.max() <= 1.5
        assert s.config["pixel_range"] == mode and f"[{mode}]" in s.label


def test_clamp_after_is_the_free_set_clamped(tiny_net):
    base = GenerationConfig(samples=8, batch_size=8, iterations=5, seed=2)
    free = generate(tiny_net, SHAPE, base, num_classes=10)
    after = generate(tiny_net, SHAPE, base.replace(pixel_range="clamp-after"), num_classes=10, valid_range=VALID)
    assert torch.equal(after.images, free.images.clamp(-0.5, 1.5))


def test_clip_projects_during_optimization_not_only_at_the_end(tiny_net):
    base = GenerationConfig(samples=8, batch_size=8, iterations=20, seed=2)
    after = generate(tiny_net, SHAPE, base.replace(pixel_range="clamp-after"), num_classes=10, valid_range=VALID)
    clip = generate(tiny_net, SHAPE, base.replace(pixel_range="clip"), num_classes=10, valid_range=VALID)
    assert not torch.allclose(after.images, clip.images)


def test_pixel_range_needs_the_valid_range_and_a_known_mode(tiny_net):
    with pytest.raises(ConfigError, match="valid range"):
        generate(tiny_net, SHAPE, GenerationConfig(samples=4, batch_size=4, iterations=2, pixel_range="clip"))
    with pytest.raises(ConfigError, match="pixel range"):
        GenerationConfig(pixel_range="wrap").validate()


def test_spec_valid_range_is_the_normalized_unit_interval():
    from dsg_core.models import get_spec
    lo, hi = get_spec("resnet20_mnist").valid_range
    assert lo[0] == pytest.approx(-0.4242, abs=1e-3) and hi[0] == pytest.approx(2.8215, abs=1e-3)
