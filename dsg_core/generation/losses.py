"""The loss terms of ZeroQ and DSG, each a small pure function of tensors.

Conventions: per-sample statistics are (B, C_total) tensors (all BN layers concatenated, see
``stats.py``); per-layer losses are (B, N) matrices L[j, i] = loss of sample j at layer i; every
scalar loss is a sum over samples divided by the batch size B. The batch-level terms also take
leading dims of independent sets, (S, B, ...) -> (S,), so that several sets optimized as one batch
(``generate_many``) each get their own loss in one vectorized expression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .stats import BNTargets

SAMPLE_DIMS = (-4, -3, -2, -1)  # (B, C, H, W) of an image batch, after any leading set dims


def bn_l2(mean: torch.Tensor, std: torch.Tensor, t: BNTargets) -> torch.Tensor:
    """ZeroQ: (mu~ - mu)^2 + (sigma~ - sigma)^2 per sample and layer -> (B, N).  [ZeroQ eq. 4]"""
    return t.per_layer((mean - t.mu).pow(2) + (std - t.sigma).pow(2))


def sda(mean: torch.Tensor, std: torch.Tensor, t: BNTargets, delta: torch.Tensor,
        gamma: torch.Tensor) -> torch.Tensor:
    """SDA hinge: max(|mu~-mu| - delta, 0)^2 + max(|sigma~-sigma| - gamma, 0)^2 -> (B, N).  [DSG eq. 6]

    ``delta``/``gamma`` are per channel (C_total,), i.e. each layer's margin broadcast to its channels.
    """
    excess_mu = F.relu((mean - t.mu).abs() - delta)
    excess_sigma = F.relu((std - t.sigma).abs() - gamma)
    return t.per_layer(excess_mu.pow(2) + excess_sigma.pow(2))


def lse_weights(batch: int, layers: int, weight: float, device=None) -> torch.Tensor:
    """LSE enhancement matrix X (B, N): 1 everywhere, ``weight`` at (j, j mod N).  [DSG eq. 8]

    The paper's X = 1 1^T + I is weight 2; weight 1 switches the enhancement off.
    """
    x = torch.ones(batch, layers, device=device)
    j = torch.arange(batch, device=device)
    x[j, j % layers] = weight
    return x


LSE_REFERENCE_SAMPLES = 20  # DSG's code enhances samples i < min(B, 20) only


def lse_reference_weights(batch: int, layers: int, weight: float, device=None) -> torch.Tensor:
    """LSE as DSG's released code does it -> X (B, N): the gap of sample i at layer i multiplied by
    ``weight``, so its squared gap by weight^2 (4 for weight 2), for i < min(B, N, 20) only; 1 elsewhere.

    [DSG code, post_training_quantization/distill_data.py; /work/shared/dsg-method.md section 8] The
    code indexes layer i directly; a model with fewer than 20 BN layers stops at its last one.
    """
    x = torch.ones(batch, layers, device=device)
    i = torch.arange(min(batch, layers, LSE_REFERENCE_SAMPLES), device=device)
    x[i, i] = weight ** 2
    return x


def weighted_mean(layer_loss: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """(1/B) sum_{i,j} X[j,i] L[j,i] over the last two dims (B, N); X=None is all ones (no LSE)."""
    total = layer_loss if x is None else layer_loss * x
    return total.sum((-2, -1)) / layer_loss.shape[-2]


def input_prior(images: torch.Tensor) -> torch.Tensor:
    """ZeroQ's input term: each image's per-channel mean -> 0 and std -> 1, summed / B."""
    var, mean = torch.var_mean(images, dim=(-2, -1), correction=0)
    return (mean.pow(2) + ((var + 1e-5).sqrt() - 1).pow(2)).sum((-2, -1)) / images.shape[-4]


def cosine_similarity_matrix(x: torch.Tensor, sets: int = 0) -> torch.Tensor:
    """B x B cosine similarities of the flattened samples; the first ``sets`` dims are independent sets."""
    flat = F.normalize(x.flatten(sets + 1), dim=-1)
    return flat @ flat.mT


def reference_spectrum(shape: tuple[int, ...], seed: int = 1234, device=None) -> torch.Tensor:
    """Ascending eigenvalues of an i.i.d. N(0,1) batch's cosine-similarity matrix (computed once)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=gen)
    return torch.linalg.eigvalsh(cosine_similarity_matrix(noise)).to(device)


def sci(images: torch.Tensor, ref_eigvals: torch.Tensor, num_layers: int, sets: int = 0) -> torch.Tensor:
    """SCI, eigenvalue form: MSE between the batch's and a Gaussian batch's similarity spectra / N.

    [DSG journal, sec. 3.4; GDPP] The full GDPP loss also aligns eigenvectors, whose gradient has
    1/(lambda_i - lambda_j) terms that explode for near-equal eigenvalues (the brief's probe saw loss
    spikes under Adam). Eigenvalue gradients are v_k v_k^T: bounded, so this form is stable. Since
    sum(lambda) = B always, the loss can only move mass between eigenvalues: it penalizes a batch
    whose similarity is concentrated in a few directions (homogenized samples). With ``sets`` leading
    dims of independent sets, one loss per set.
    """
    eig = torch.linalg.eigvalsh(cosine_similarity_matrix(images, sets))
    return F.mse_loss(eig, ref_eigvals.expand_as(eig), reduction="none").mean(-1) / num_layers


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """TV-L2 prior: squared differences of neighbouring pixels, summed per image, / B."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return (dx.pow(2).sum(SAMPLE_DIMS) + dy.pow(2).sum(SAMPLE_DIMS)) / images.shape[-4]


def l2_prior(images: torch.Tensor) -> torch.Tensor:
    """L2 prior: squared pixel norm per image, / B (keeps pixels from drifting far)."""
    return images.pow(2).sum(SAMPLE_DIMS) / images.shape[-4]


def tv_norm4(images: torch.Tensor) -> torch.Tensor:
    """TV as DSG's code (DeepInversion's ``get_image_prior_losses``, its ``loss_var_l2``) computes it:
    the sum over four directions (horizontal, vertical, both diagonals) of the un-squared L2 norm of
    the neighbour differences over the whole batch; not divided by B. Leading set dims -> one per set."""
    diffs = (images[..., :, :-1] - images[..., :, 1:], images[..., :-1, :] - images[..., 1:, :],
             images[..., 1:, :-1] - images[..., :-1, 1:], images[..., :-1, :-1] - images[..., 1:, 1:])
    return sum(d.pow(2).sum(SAMPLE_DIMS).sqrt() for d in diffs)


def l2_norm_prior(images: torch.Tensor) -> torch.Tensor:
    """L2 prior as DSG's code computes it: the mean over the batch of each image's un-squared norm."""
    return images.pow(2).sum((-3, -2, -1)).sqrt().mean(-1)


TV_FORMS = {"squared": total_variation, "norm4": tv_norm4}
L2_FORMS = {"squared": l2_prior, "norm": l2_norm_prior}


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the batch: (..., B, K) logits and (..., B) labels -> (...)."""
    per_sample = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none")
    return per_sample.view(labels.shape).mean(-1)


def jitter(images: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation of the whole batch by up to max_px pixels (DeepInversion's jitter)."""
    if max_px <= 0:
        return images
    dx, dy = torch.randint(-max_px, max_px + 1, (2,), generator=gen).tolist()
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
