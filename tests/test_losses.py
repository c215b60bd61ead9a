"""Each loss term against hand-computed values on tiny tensors."""

import math

import pytest
import torch

from dsg_core.generation import losses
from dsg_core.generation.stats import BNTargets


def two_layer_targets():
    # layer 0: 2 channels, layer 1: 1 channel
    return BNTargets(names=["a", "b"], mu=torch.tensor([0.0, 1.0, 2.0]), sigma=torch.tensor([1.0, 1.0, 2.0]),
                     layer_of=torch.tensor([0, 0, 1]), channels=[2, 1])


def test_bn_l2_per_layer_by_hand():
    t = two_layer_targets()
    mean = torch.tensor([[1.0, 1.0, 2.0]])   # gaps 1, 0, 0
    std = torch.tensor([[1.0, 3.0, 1.0]])    # gaps 0, 2, 1
    L = losses.bn_l2(mean, std, t)
    assert torch.allclose(L, torch.tensor([[1.0 + 4.0, 1.0]]))


def test_sda_zero_inside_margin_and_squared_excess_outside():
    t = two_layer_targets()
    delta = torch.tensor([0.5, 0.5, 0.5])
    gamma = torch.tensor([1.0, 1.0, 1.0])
    inside = losses.sda(t.mu[None] + 0.4, t.sigma[None] - 0.9, t, delta, gamma)
    assert torch.equal(inside, torch.zeros(1, 2))
    # mean gap 2.0 on channel 0 -> excess 1.5 -> 2.25; std gap 3 on channel 2 -> excess 2 -> 4
    mean = t.mu[None].clone()
    mean[0, 0] += 2.0
    std = t.sigma[None].clone()
    std[0, 2] += 3.0
    L = losses.sda(mean, std, t, delta, gamma)
    assert torch.allclose(L, torch.tensor([[2.25, 4.0]]))


def test_sda_with_zero_margin_equals_l2():
    t = two_layer_targets()
    mean, std = torch.randn(3, 3), torch.rand(3, 3) + 0.5
    zero = torch.zeros(3)
    assert torch.allclose(losses.sda(mean, std, t, zero, zero), losses.bn_l2(mean, std, t))


def test_lse_weights_assign_layer_j_mod_n():
    x = losses.lse_weights(5, 3, 2.0)
    expected = torch.ones(5, 3)
    for j in range(5):
        expected[j, j % 3] = 2.0
    assert torch.equal(x, expected)
    L = torch.arange(15, dtype=torch.float).view(5, 3)
    # (1/B) sum X*L by hand
    assert losses.weighted_mean(L, x).item() == pytest.approx((L.sum() + sum(L[j, j % 3] for j in range(5))).item() / 5)
    assert losses.weighted_mean(L).item() == L.sum().item() / 5


def test_sci_near_zero_for_gaussian_and_large_for_copies():
    shape = (16, 1, 28, 28)
    ref = losses.reference_spectrum(shape)
    gauss = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    copies = gauss[:1].repeat(16, 1, 1, 1)
    g, c = losses.sci(gauss, ref, 1).item(), losses.sci(copies, ref, 1).item()
    assert g < 0.01
    assert c > 10.0  # spectrum (0, ..., 0, 16) vs ~(1, ..., 1): MSE = (15 + 15^2) / 16 = 15
    assert abs(c - 15.0) < 0.5


def test_sci_is_divided_by_layer_count():
    shape = (8, 1, 6, 6)
    ref = losses.reference_spectrum(shape)
    x = torch.rand(shape)
    assert torch.allclose(losses.sci(x, ref, 4) * 4, losses.sci(x, ref, 1))


def test_input_prior_zero_for_standardized_images():
    x = torch.randn(4, 3, 8, 8)
    x = (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True, correction=0)
    assert losses.input_prior(x).item() < 1e-4
    assert abs(losses.input_prior(torch.zeros(2, 1, 4, 4) + 2).item() - (4 + 1) * 1) < 1e-2  # per image: 2^2 + (0-1)^2


def test_priors_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # dx: 1,1  dy: 2,2
    assert losses.total_variation(x).item() == 1 + 1 + 4 + 4
    assert losses.l2_prior(x).item() == 0 + 1 + 4 + 9


def test_reference_code_priors_by_hand():
    """DSG's code: TV = sum over 4 directions of the un-squared norm of the differences over the
    batch (DeepInversion's loss_var_l2), L2 = mean over the batch of each image's un-squared norm."""
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[0.0, 0.0], [0.0, 4.0]]]])
    # horizontal: (-1, -1) and (0, -4); vertical: (-2, -2) and (0, -4); diagonals: (2-1) and (0-0); (0-3) and (0-4)
    expected = math.sqrt(1 + 1 + 16) + math.sqrt(4 + 4 + 16) + math.sqrt(1 + 0) + math.sqrt(9 + 16)
    assert losses.tv_norm4(x).item() == pytest.approx(expected)
    assert losses.l2_norm_prior(x).item() == pytest.approx((math.sqrt(14) + 4) / 2)
    assert losses.total_variation(x).item() != pytest.approx(expected)  # a different form, not a rename


def test_lse_reference_mode_enhances_sample_i_at_layer_i_for_the_first_20_only():
    x = losses.lse_reference_weights(64, 25, 2.0)
    i = torch.arange(20)
    assert torch.all(x[i, i] == 4.0)  # the gap times 2: its square times 4
    assert (x != 1).sum() == 20 and x[20, 20] == 1 and x[25:].eq(1).all()
    few_layers = losses.lse_reference_weights(8, 3, 2.0)  # min(B, N, 20): layer i must exist
    assert (few_layers != 1).sum() == 3 and torch.all(few_layers[torch.arange(3), torch.arange(3)] == 4)
    small_batch = losses.lse_reference_weights(5, 30, 2.0)
    assert (small_batch != 1).sum() == 5
    paper = losses.lse_weights(64, 25, 2.0)
    assert (paper != 1).sum() == 64 and paper[30, 5] == 2.0  # the paper's mode: every sample, j mod N


def test_batch_terms_with_leading_set_dims_equal_each_set_alone():
    """(S, B, ...) -> (S,): what generate_many computes equals the lone term on each set."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 2, 6, 6, generator=gen)
    logits, labels = torch.randn(3, 5, 10, generator=gen), torch.randint(0, 10, (3, 5), generator=gen)
    layer, lse = torch.rand(3, 5, 4, generator=gen), losses.lse_weights(5, 4, 2.0)
    ref = losses.reference_spectrum((5, 2, 6, 6))
    per_set = {"input": (losses.input_prior(x), [losses.input_prior(s) for s in x]),
               "tv": (losses.total_variation(x), [losses.total_variation(s) for s in x]),
               "l2": (losses.l2_prior(x), [losses.l2_prior(s) for s in x]),
               "tv-norm4": (losses.tv_norm4(x), [losses.tv_norm4(s) for s in x]),
               "l2-norm": (losses.l2_norm_prior(x), [losses.l2_norm_prior(s) for s in x]),
               "sci": (losses.sci(x, ref, 3, sets=1), [losses.sci(s, ref, 3) for s in x]),
               "ce": (losses.cross_entropy(logits, labels),
                      [torch.nn.functional.cross_entropy(lg, lb) for lg, lb in zip(logits, labels)]),
               "bn": (losses.weighted_mean(layer, lse), [losses.weighted_mean(s, lse) for s in layer])}
    for name, (together, alone) in per_set.items():
        assert together.shape == (3,), name
        assert torch.allclose(together, torch.stack(alone), rtol=1e-5, atol=1e-7), name
