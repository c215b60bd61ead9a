"""Diversity metrics of a synthetic set, each a plain number (or array) from a Probe.

They answer "how homogenized is this set?" from several angles: similarity between samples (pixel
and feature space), how many directions the batch spans (effective rank), how widely per-sample BN
statistics scatter compared with real data, how many classes it covers, and how close its feature
distribution is to real data (Fréchet distance, k-NN precision/recall).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..generation.losses import cosine_similarity_matrix
from ..generation.stats import BNTargets
from .probe import Probe


def mean_offdiag_cosine(x: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct samples (1 = identical directions)."""
    s = cosine_similarity_matrix(x.double())
    n = s.shape[0]
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1))) if n > 1 else float("nan")


def similarity_spectrum(x: torch.Tensor) -> np.ndarray:
    """Descending eigenvalues of the cosine-similarity matrix (sum = number of samples)."""
    return torch.linalg.eigvalsh(cosine_similarity_matrix(x.double())).flip(0).clamp_min(0).numpy()


def effective_rank(x: torch.Tensor) -> float:
    """exp(entropy of the normalized spectrum) [Roy & Vetterli 2007]: 1 = all samples alike, n = orthogonal."""
    p = similarity_spectrum(x)
    p = p / p.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def layer_spread(stat: torch.Tensor, targets: BNTargets) -> np.ndarray:
    """Per layer: std over samples of a per-sample statistic, averaged over the layer's channels."""
    sd = stat.double().std(0, correction=0)  # (C_total,)
    per_layer = torch.zeros(targets.num_layers, dtype=sd.dtype).index_add_(0, targets.layer_of.cpu(), sd)
    return (per_layer / torch.tensor(targets.channels, dtype=sd.dtype)).numpy()


def spread_ratio(syn: Probe, real: Probe, targets: BNTargets) -> dict[str, np.ndarray]:
    """Per-layer spread of per-sample means and stds, synthetic / real (1 = as diverse as real)."""
    return {"mean": layer_spread(syn.mean, targets) / layer_spread(real.mean, targets),
            "std": layer_spread(syn.std, targets) / layer_spread(real.std, targets)}


def in_band_fraction(p: Probe, targets: BNTargets, delta: torch.Tensor, gamma: torch.Tensor) -> float:
    """Fraction of per-sample (mean, std) statistics inside the slack band mu +- delta, sigma +- gamma."""
    d, g = delta.cpu()[targets.layer_of.cpu()], gamma.cpu()[targets.layer_of.cpu()]
    inside = ((p.mean - targets.mu.cpu()).abs() <= d) & ((p.std - targets.sigma.cpu()).abs() <= g)
    return float(inside.double().mean())


def class_entropy(p: Probe) -> tuple[float, float]:
    """(entropy of the predicted-class histogram / log K, fraction of classes predicted at least once)."""
    k = p.logits.shape[1]
    counts = torch.bincount(p.logits.argmax(1), minlength=k).double()
    q = counts / counts.sum()
    h = -(q[q > 0] * q[q > 0].log()).sum()
    return float(h / math.log(k)) + 0.0, float((counts > 0).double().mean())  # + 0.0: no "-0.0"


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 (Ca Cb)^1/2) between Gaussian fits [Heusel et al. 2017, FID].

    Tr (Ca Cb)^1/2 = sum sqrt(eig(Ca^1/2 Cb Ca^1/2)): symmetric eigen-decompositions only, so it is
    stable for the rank-deficient covariances of small sets.
    """
    a, b = a.double(), b.double()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(ca)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    tr_sqrt = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    d = float((a.mean(0) - b.mean(0)).square().sum() + ca.trace() + cb.trace() - 2 * tr_sqrt)
    return max(d, 0.0)  # a distance: rounding can leave a set against itself a hair below 0


def knn_precision_recall(syn: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision/recall [Kynkäänniemi et al. 2019]: a sample counts as covered when it lies
    inside the k-NN ball of some sample of the other set."""
    def radii(x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        return d.kthvalue(min(k + 1, len(x)), dim=1).values  # k-th neighbour, self excluded

    syn, real = syn.double(), real.double()
    d = torch.cdist(syn, real)  # (S, R)
    precision = (d <= radii(real)[None, :]).any(1).double().mean()
    recall = (d.T <= radii(syn)[None, :]).any(1).double().mean()
    return float(precision), float(recall)


def diversity_metrics(images: torch.Tensor, syn: Probe, real: Probe, targets: BNTargets,
                      delta: torch.Tensor | None = None, gamma: torch.Tensor | None = None) -> dict[str, float]:
    """Every scalar metric of one set, keyed as in the CLI's ``diagnose --json`` contract."""
    spread = spread_ratio(syn, real, targets)
    entropy, coverage = class_entropy(syn)
    precision, recall = knn_precision_recall(syn.features, real.features)
    out = {
        "mean_cosine_similarity": mean_offdiag_cosine(images),
        "feature_cosine_similarity": mean_offdiag_cosine(syn.features),
        "effective_rank": effective_rank(images),
        "feature_effective_rank": effective_rank(syn.features),
        "stat_spread_ratio": float(np.mean(spread["mean"])),
        "std_spread_ratio": float(np.mean(spread["std"])),
        "frechet_distance": frechet_distance(syn.features, real.features),
        "precision": precision,
        "recall": recall,
        "class_entropy": entropy,
        "class_coverage": coverage,
        "mean_confidence": float(syn.probs.max(1).values.mean()),
    }
    if delta is not None and gamma is not None:
        out["in_band_fraction"] = in_band_fraction(syn, targets, delta, gamma)
    return out
