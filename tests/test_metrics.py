"""Diversity metrics against hand values and known cases."""

import pytest
import torch

from dsg_core.diagnostics.metrics import (
    effective_rank,
    frechet_distance,
    knn_precision_recall,
    mean_offdiag_cosine,
    similarity_spectrum,
)


def test_cosine_of_copies_is_one_and_of_orthogonal_is_zero():
    x = torch.randn(1, 5).repeat(4, 1)
    assert mean_offdiag_cosine(x) == pytest.approx(1.0)
    assert mean_offdiag_cosine(torch.eye(4)) == pytest.approx(0.0)


def test_effective_rank_bounds():
    assert effective_rank(torch.randn(1, 7).repeat(5, 1)) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    assert similarity_spectrum(torch.eye(3)).sum() == pytest.approx(3.0)


def test_frechet_distance_against_closed_form():
    torch.manual_seed(0)
    a = torch.randn(4000, 3)
    b = a * 2 + 1  # mean shift 1 per dim, covariance x4
    # ||1||^2 * 3 + tr(C + 4C - 2 * 2C) = 3 + tr(C) ~= 3 + 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_knn_precision_recall():
    torch.manual_seed(0)
    real = torch.randn(200, 2)
    assert knn_precision_recall(real.clone(), real) == (1.0, 1.0)
    far = torch.randn(50, 2) + 100
    p, r = knn_precision_recall(far, real)
    assert p == 0.0 and r == 0.0
    collapsed = real[:1].repeat(50, 1) + 1e-4 * torch.randn(50, 2)  # one mode: precise, no recall
    p, r = knn_precision_recall(collapsed, real)
    assert p == 1.0 and r < 0.2
