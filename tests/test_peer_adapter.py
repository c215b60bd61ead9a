"""bench/peer_adapter.py: a 1-channel model behind the 3-channel view a peer (MCT) optimizes for.
Runs without MCT: the adapter imports none of it."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.fx import symbolic_trace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from peer_adapter import (  # noqa: E402 - bench/ is not a package: its path goes first
    FirstChannel,
    channel0_affine,
    peer_normalization,
    to_model_space,
)

from dsg_core.models import get_spec  # noqa: E402 - after the bench path, as the other bench tests

MNIST = get_spec("resnet20_mnist")
IMAGENET = [[0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]]  # MCT's default


def pixels_in_peer_space(p: torch.Tensor, norm) -> torch.Tensor:
    """Pixels p in [0, 1] (N, 1, H, W) as a peer holds them: 3 equal channels, each in its normalization."""
    mean, std = torch.tensor(norm[0]).view(1, 3, 1, 1), torch.tensor(norm[1]).view(1, 3, 1, 1)
    return (p.expand(-1, 3, -1, -1) * 255 - mean) / std


@pytest.mark.parametrize("norm", [peer_normalization(MNIST.mean[0], MNIST.std[0]), IMAGENET])
def test_the_same_pixels_land_in_the_models_space(norm):
    """Whatever the peer's normalization, a pixel maps to the model's normalized value of that pixel;
    the peer's clip grid ([0, 255] pixels) maps onto the model's valid range."""
    p = torch.rand(4, 1, 6, 6)
    p[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # the two ends of the valid range
    scale, shift = channel0_affine(norm[0], norm[1], MNIST.mean[0], MNIST.std[0])
    out = to_model_space(pixels_in_peer_space(p, norm), scale, shift)
    assert out.shape == (4, 1, 6, 6)
    torch.testing.assert_close(out, (p - MNIST.mean[0]) / MNIST.std[0], rtol=1e-5, atol=1e-5)
    (lo,), (hi,) = MNIST.valid_range
    torch.testing.assert_close(out[0, 0, 0, :2], torch.tensor([lo, hi]), rtol=1e-5, atol=1e-5)


def test_with_the_models_own_normalization_the_map_is_the_identity():
    norm = peer_normalization(MNIST.mean[0], MNIST.std[0])
    assert norm == [[MNIST.mean[0] * 255] * 3, [MNIST.std[0] * 255] * 3]
    scale, shift = channel0_affine(norm[0], norm[1], MNIST.mean[0], MNIST.std[0])
    assert scale == pytest.approx(1.0) and shift == pytest.approx(0.0, abs=1e-12)


def test_the_wrapped_model_sees_channel_0_mapped_and_ignores_the_others():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    scale, shift = channel0_affine(IMAGENET[0], IMAGENET[1], MNIST.mean[0], MNIST.std[0])
    wrapped = FirstChannel(model, scale, shift)
    x = torch.randn(2, 3, 8, 8)
    expected = model(to_model_space(x, scale, shift))
    torch.testing.assert_close(wrapped(x), expected)
    other = x.clone()
    other[:, 1:] = torch.randn(2, 2, 8, 8) * 10
    torch.testing.assert_close(wrapped(other), expected)
    x.requires_grad_(True)
    wrapped(x).sum().backward()
    assert x.grad[:, 0].abs().sum() > 0 and x.grad[:, 1:].abs().sum() == 0


def test_it_traces_with_torch_fx():
    """MCT builds a torch.fx graph of the model it is given: the wrapper must trace, and keep the
    BatchNorm layers it hooks."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).eval()
    wrapped = FirstChannel(model, 2.0, -1.0)
    traced = symbolic_trace(wrapped)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(traced(x), wrapped(x))
    assert any(isinstance(m, nn.BatchNorm2d) for m in traced.modules())
