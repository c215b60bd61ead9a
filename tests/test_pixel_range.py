"""The pixel-range diagnostic (issue 21): out-of-range fraction, largest excursion, clamping, and
the activation ranges a set calibrates relative to real data's."""

import pytest
import torch

from dsg_core.diagnostics import (
    activation_ranges,
    clamp_to_range,
    diagnose,
    layer_range_frame,
    pixel_range_metrics,
    range_ratios,
)
from dsg_core.diagnostics.pixels import excursion, per_image
from dsg_core.errors import DataError

VALID = ((-1.0, 0.0), (1.0, 2.0))  # two channels with different bounds


def two_images() -> torch.Tensor:
    x = torch.zeros(2, 2, 2, 2)
    x[:, 1] = 1.0  # inside both channels' ranges
    x[0, 0, 0, 0] = 3.0   # channel 0 above its high bound 1 by 2
    x[0, 1, 1, 1] = -0.5  # channel 1 below its low bound 0 by 0.5
    x[1, 0, 1, 0] = 1.0   # on the bound: inside
    return x


def test_excursion_is_the_distance_beyond_each_channels_bound():
    e = excursion(two_images(), VALID)
    assert e[0, 0, 0, 0] == 2.0 and e[0, 1, 1, 1] == 0.5
    assert int((e > 0).sum()) == 2  # the pixel on the bound is inside


def test_per_image_and_set_metrics_by_hand():
    frac, top = per_image(two_images(), VALID)
    assert frac.tolist() == [2 / 8, 0.0] and top.tolist() == [2.0, 0.0]
    m = pixel_range_metrics(two_images(), VALID)
    assert m == {"out_of_range_fraction": pytest.approx(2 / 16), "max_excursion": 2.0, "images_out_of_range": 0.5}


def test_clamping_brings_every_pixel_in_and_leaves_inside_pixels_alone():
    x = two_images()
    c = clamp_to_range(x, VALID)
    assert pixel_range_metrics(c, VALID)["out_of_range_fraction"] == 0.0
    inside = excursion(x, VALID) == 0
    assert torch.equal(c[inside], x[inside]) and c[0, 0, 0, 0] == 1.0 and c[0, 1, 1, 1] == 0.0
    assert x[0, 0, 0, 0] == 3.0  # a copy: the input set is untouched


def test_real_pixels_normalized_in_float32_are_inside():
    from dsg_core.data import real_split
    from dsg_core.models import get_spec
    real = real_split("resnet20_mnist", "train")[0][:64]
    assert pixel_range_metrics(real, get_spec("resnet20_mnist").valid_range)["out_of_range_fraction"] == 0.0
    lo = get_spec("resnet20_mnist").valid_range[0][0]
    assert excursion(torch.full((1, 1, 1, 1), lo - 1e-3), ((lo,), (lo + 1,))).item() == pytest.approx(1e-3, rel=1e-4)


def test_a_range_for_other_channels_is_refused():
    with pytest.raises(DataError, match="channels"):
        excursion(torch.zeros(1, 3, 2, 2), VALID)


def test_range_ratios_summarize_layers():
    r = range_ratios(torch.tensor([2.0, 0.5, 4.0]), torch.tensor([1.0, 1.0, 1.0]))
    assert r["range_ratio"] == pytest.approx(4.0 ** (1 / 3)) and r["max_layer_ratio"] == 4.0


def test_wider_inputs_calibrate_wider_activation_ranges(tiny_net):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    base, wide = activation_ranges(tiny_net, x), activation_ranges(tiny_net, 5 * x)
    assert len(base) >= 1 and bool((wide > base).all())
    assert range_ratios(base, base)["range_ratio"] == pytest.approx(1.0)


def test_layer_range_frame_is_one_row_per_set_and_layer_relative_to_real(tiny_net):
    torch.manual_seed(0)
    real = torch.rand(16, 1, 8, 8)
    f = layer_range_frame(tiny_net, {"real again": real, "wide": 10 * real}, real)
    layers = len(activation_ranges(tiny_net, real))
    assert len(f) == 2 * layers and list(f.columns) == ["set", "layer", "layer_name", "range", "ratio"]
    assert (f[f.set == "real again"].ratio == 1.0).all() and (f[f.set == "wide"].ratio > 1.0).all()


def test_diagnose_reports_pixel_range_per_set_and_per_image(tiny_net):
    torch.manual_seed(0)
    real = torch.rand(32, 1, 8, 8)  # inside [-0.5, 1.5]
    wild = torch.randn(16, 1, 8, 8) * 3
    d = diagnose(tiny_net, {"wild": wild, "clamped": wild.clamp(-0.5, 1.5)}, real, (1, 8, 8),
                 valid_range=((-0.5,), (1.5,)))
    m = d.metrics()
    assert m.loc["Real", "out_of_range_fraction"] == 0.0 and m.loc["clamped", "max_excursion"] == 0.0
    expected = float(((wild < -0.5) | (wild > 1.5)).double().mean())
    assert m.loc["wild", "out_of_range_fraction"] == pytest.approx(expected) and expected > 0.3
    assert m.loc["wild", "max_excursion"] == pytest.approx(max(float(-0.5 - wild.min()), float(wild.max() - 1.5)))
    per = d.pixel_excursions()
    assert len(per) == 32 + 16 + 16 and set(per.set) == {"Real", "wild", "clamped"}
    assert per[per.set == "wild"].out_of_range_fraction.mean() == pytest.approx(expected)
    assert "out_of_range_fraction" not in diagnose(tiny_net, {"wild": wild}, real, (1, 8, 8)).metrics()


def test_clamping_a_free_set_is_generating_with_clamp_after(tiny_net):
    from dsg_core.generation import GenerationConfig, generate
    cfg = GenerationConfig(samples=8, batch_size=8, iterations=5, seed=3)
    free = generate(tiny_net, (1, 8, 8), cfg, num_classes=10)
    after = generate(tiny_net, (1, 8, 8), cfg.replace(pixel_range="clamp-after"), num_classes=10,
                     valid_range=((-0.5,), (1.5,)))
    assert torch.equal(clamp_to_range(free.images, ((-0.5,), (1.5,))), after.images)
