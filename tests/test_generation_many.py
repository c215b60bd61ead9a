"""generate_many: several sets optimized as one batch, each equal to generating it alone."""

import pytest
import torch
import torch.nn as nn

from dsg_core.errors import Cancelled, ConfigError, NumericalError
from dsg_core.generation import GenerationConfig, generate, generate_many
from dsg_core.generation.many import shared_passes

SHAPE = (1, 8, 8)
VALID = ((-0.5,), (1.5,))


def mixed_configs(base: GenerationConfig) -> list[GenerationConfig]:
    """ZeroQ, DSG and DSG with SDA only over 2 seeds, with every pixel-range mode among them."""
    return [base.replace(method="zeroq", seed=1), base.replace(seed=1, pixel_range="clip"),
            base.replace(seed=1, lse=False, sci=False, pixel_range="clamp-after"),
            base.replace(method="zeroq", seed=2, pixel_range="clip"), base.replace(seed=2),
            base.replace(seed=2, lse=False, sci=False)]


def assert_same_as_alone(model, shape, cfgs, many, atol=1e-4, **kw):
    for cfg, s in zip(cfgs, many, strict=True):
        alone = generate(model, shape, cfg, **kw)
        scale = alone.images.abs().max().item()
        assert s.config == alone.config
        assert torch.allclose(s.images, alone.images, rtol=1e-4, atol=atol * scale), cfg.label
        assert [list(r) for r in s.history] == [list(r) for r in alone.history]  # same parts, same order
        assert [r["loss"] for r in s.history] == pytest.approx([r["loss"] for r in alone.history], rel=1e-4)
        for name in ("targets", "delta", "gamma"):
            a, b = getattr(alone, name), getattr(s, name)
            assert (a is None and b is None) or torch.equal(a, b), name


def test_every_set_equals_generating_it_alone_on_the_tiny_net(tiny_net):
    base = GenerationConfig(samples=8, batch_size=8, iterations=12, plateau_patience=2)
    cfgs = mixed_configs(base)
    seen = []
    many = generate_many(tiny_net, SHAPE, cfgs, num_classes=10, valid_range=VALID, progress=seen.append)
    assert len(seen) == 12 and seen[-1].extra["sets"] == list(range(6))  # one pass for all six sets
    assert any(r["iteration"] > 1 for r in many[0].history)
    assert_same_as_alone(tiny_net, SHAPE, cfgs, many, num_classes=10, valid_range=VALID)
    assert not torch.allclose(many[0].images, many[3].images)  # seeds and methods stay distinct


def test_priors_labels_jitter_and_batches_per_set(tiny_net):
    """CE on each set's own labels, TV/L2 with their own weights, each set's own jitter stream, and
    several batches per set (the last one smaller)."""
    base = GenerationConfig(samples=11, batch_size=4, iterations=4)
    cfgs = [base.replace(seed=3, ce_weight=1.0, tv_weight=0.1, l2_weight=0.05, jitter=2),
            base.replace(method="zeroq", seed=4, targets=(1, 7)),
            base.replace(seed=5, ce_weight=0.5, jitter=1, lr=0.2, schedule="cosine"),
            base.replace(method="gaussian", seed=6)]
    seen = []
    many = generate_many(tiny_net, SHAPE, cfgs, num_classes=10, progress=seen.append)
    assert len(seen) == 3 * 4
    assert [len(s) for s in many] == [11] * 4
    assert_same_as_alone(tiny_net, SHAPE, cfgs, many, num_classes=10)


def test_resnet20_mnist_sets_equal_generating_them_alone():
    from dsg_core.models import get_spec, load_model
    spec, model = get_spec("resnet20_mnist"), load_model("resnet20_mnist")
    cfgs = mixed_configs(GenerationConfig(samples=6, batch_size=6, iterations=3, margin_samples=16))
    kw = dict(num_classes=spec.num_classes, valid_range=spec.valid_range)
    many = generate_many(model, spec.input_shape, cfgs, **kw)
    assert_same_as_alone(model, spec.input_shape, cfgs, many, atol=1e-3, **kw)


def test_sets_that_cannot_share_a_batch_run_in_passes_of_their_own(tiny_net):
    base = GenerationConfig(samples=4, batch_size=4, iterations=3)
    cfgs = [base, base.replace(iterations=5), base.replace(seed=1), base.replace(samples=6, batch_size=6),
            base.replace(method="gaussian")]
    assert shared_passes(cfgs) == [[0, 2], [1], [3]]
    seen = []
    many = generate_many(tiny_net, SHAPE, cfgs, progress=seen.append)
    assert [p.extra["sets"] for p in seen] == [[0, 2]] * 3 + [[1]] * 5 + [[3]] * 3
    assert [p.step for p in seen] == list(range(1, 12)) and seen[0].total == 11
    assert_same_as_alone(tiny_net, SHAPE, cfgs, many)


def test_sets_beyond_the_memory_for_one_batch_run_in_several_passes(monkeypatch, tiny_net):
    from dsg_core import resources
    per_sample = resources.estimate_generation_bytes(tiny_net, SHAPE, 1)
    monkeypatch.setattr(resources, "available_bytes", lambda _d: int(8.5 * per_sample / 0.8))
    cfgs = [GenerationConfig(samples=4, batch_size=4, iterations=2, seed=s) for s in range(3)]
    seen = []
    many = generate_many(tiny_net, SHAPE, cfgs, progress=seen.append)
    assert [p.extra["sets"] for p in seen] == [[0, 1]] * 2 + [[2]] * 2  # 8 images fit, 12 do not
    assert_same_as_alone(tiny_net, SHAPE, cfgs, many)


def test_settings_errors_come_before_any_work(tiny_net):
    calls = []
    ok = GenerationConfig(samples=4, batch_size=4, iterations=2)
    for bad, msg in [(ok.replace(pixel_range="clip"), "valid range"), (ok.replace(ce_weight=1.0), "classes"),
                     (ok.replace(epsilon=2.0), "epsilon")]:
        with pytest.raises(ConfigError, match=msg):
            generate_many(tiny_net, SHAPE, [ok, bad], progress=calls.append)
    assert calls == []


class NaNInLastRows(nn.Module):
    """NaN logits for the last ``rows`` samples of every forward with grad after the first ``n``
    (the set-up passes run without grad; the fast copy's check is one pass with grad)."""

    def __init__(self, net, n, rows):
        super().__init__()
        self.net, self.n, self.rows, self.calls = net, n, rows, 0

    def forward(self, x):
        self.calls += torch.is_grad_enabled()
        out = self.net(x)
        if self.calls <= self.n:
            return out
        return torch.cat([out[:-self.rows], out[-self.rows:] * float("nan")])


def test_nan_names_the_set_and_keeps_its_last_good_images(tiny_net):
    net = NaNInLastRows(tiny_net, n=2, rows=4)  # the fold check's pass + one good iteration
    cfgs = [GenerationConfig(samples=4, batch_size=4, iterations=10, seed=1),
            GenerationConfig(samples=4, batch_size=4, iterations=10, method="zeroq", ce_weight=1.0)]
    with pytest.raises(NumericalError, match=r"^ZeroQ \+ priors \(seed 0\).*iteration 2") as err:
        generate_many(net, SHAPE, cfgs, num_classes=10)
    assert err.value.iteration == 2
    assert err.value.last_good.shape == (4, *SHAPE) and torch.isfinite(err.value.last_good).all()


def test_cancel_keeps_each_sets_batches_so_far(tiny_net):
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    cfgs = [GenerationConfig(samples=4, batch_size=4, iterations=50, seed=s) for s in (0, 1)]
    with pytest.raises(Cancelled) as err:
        generate_many(tiny_net, SHAPE, cfgs + [cfgs[0].replace(method="gaussian")], cancel=cancel)
    assert set(err.value.partial) == {0, 1}
    assert all(len(p) == 1 and p[0].shape == (4, *SHAPE) for p in err.value.partial.values())


def test_bf16_sets_equal_their_lone_bf16_runs(tiny_net):
    cfgs = [GenerationConfig(samples=4, batch_size=4, iterations=3, seed=s, method=m)
            for s, m in ((0, "zeroq"), (1, "dsg"))]
    many = generate_many(tiny_net, SHAPE, cfgs, precision="bf16")
    assert_same_as_alone(tiny_net, SHAPE, cfgs, many, atol=1e-2, precision="bf16")
