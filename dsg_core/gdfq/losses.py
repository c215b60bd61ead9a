"""Losses of generative data-free QAT: knowledge distillation for the quantized model, and the
generator's objective (GDFQ's CE + BN-statistics loss, with DSG's SDA / LSE / SCI as switches).

A generator is trained on *batch* statistics (GDFQ): the mean and variance of a BN layer's input
over the whole batch (N, H, W), not per sample as in ZeroQ/DSG-PTQ. They are computed here from the
per-sample moments that :class:`~dsg_core.generation.stats.BNStats` already collects, so the same
hooks serve both; the per-layer losses are the existing :func:`~dsg_core.generation.losses.bn_l2`
and :func:`~dsg_core.generation.losses.sda` applied to one row of batch statistics.

Deviations from the reference code (htqin/DSG ``quantization_aware_training/trainer.py``), all
documented where they happen:
- statistics are (mean, std) as everywhere in this project; GDFQ and the DSG QAT code compare
  (mean, variance). The BN weight 0.1 and the average over layers are GDFQ's.
- SDA is a true hinge by default; the reference code's form is ``sda_mode="reference"``.
- LSE on batch statistics: see :meth:`GeneratorObjective.bn_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..generation import losses
from ..generation.margins import Margins, layer_quantile
from ..generation.stats import BNStats, BNTargets

SDA_MODES = ("hinge", "reference")
LSE_GROUP_SIZE = 4  # fewest samples per LSE group: smaller groups' statistics are mostly sampling noise


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch.  [Hinton et al. 2015]

    The T^2 factor keeps the gradient scale independent of T. (GDFQ's code uses ``nn.KLDivLoss()``
    with its default element-wise mean, which also divides by the number of classes.)
    """
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def group_stats(mean: torch.Tensor, std: torch.Tensor, groups: int,
                eps: float = BNStats.eps) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group batch statistics from per-sample ones: (G, C) mean and sqrt(biased var + eps).

    Sample j belongs to group j mod G. With equal pixels per sample, a group's moments are the
    averages of its samples' moments: E[x] = avg mean_j, E[x^2] = avg (var_j + mean_j^2),
    var_j = std_j^2 - eps (``BNStats`` adds eps inside its square root).
    """
    b, c = mean.shape
    gid = torch.arange(b, device=mean.device) % groups
    count = torch.bincount(gid, minlength=groups).to(mean.dtype).unsqueeze(1)
    m1 = mean.new_zeros(groups, c).index_add_(0, gid, mean) / count
    m2 = mean.new_zeros(groups, c).index_add_(0, gid, std.square() - eps + mean.square()) / count
    return m1, ((m2 - m1.square()).clamp_min(0) + eps).sqrt()


def batch_stats(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-batch statistics (GDFQ) as one row: (1, C) mean and std."""
    return group_stats(mean, std, 1)


def sda_reference(mean: torch.Tensor, std: torch.Tensor, t: BNTargets, delta: torch.Tensor,
                  gamma: torch.Tensor) -> torch.Tensor:
    """The reference QAT code's "SDA": (|mu~-mu| - delta)^2 + (|sigma~-sigma| - gamma)^2 -> (B, N).

    Its ``max(|gap - margin|, 0)`` is |gap - margin| (the max with 0 does nothing), so the loss is
    zero only *on* the margin and pulls every gap toward it, from below as well as from above:
    no slack, the opposite of the paper's dead zone (eq. 6, :func:`losses.sda`).
    """
    off_mu = (mean - t.mu).abs() - delta
    off_sigma = (std - t.sigma).abs() - gamma
    return t.per_layer(off_mu.pow(2) + off_sigma.pow(2))


@torch.no_grad()
def batch_margins(model: nn.Module, targets: BNTargets, shape: tuple[int, ...], group: int, epsilon: float,
                  n: int = 512, seed: int = 0, device="cpu") -> Margins:
    """SDA margins for the statistics of groups of ``group`` samples (DSG sec. 3.1, batch form).

    n N(0,1) images go through the model once; their gaps |mu^g - mu|, |sigma^g - sigma| are taken
    for n / group disjoint groups, and delta_i / gamma_i are the epsilon-quantile of layer i's gaps.
    A group's statistics scatter less than one sample's, so per-sample margins (``compute_margins``)
    would be too wide here.
    """
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((max(n, 2 * group), *shape), generator=gen).to(device)
    with BNStats(model, targets.names) as st:
        model(noise)
        mean, std = st.collect()
    m, s = group_stats(mean, std, noise.shape[0] // group)
    return Margins(layer_quantile((m - targets.mu).abs(), targets, epsilon),
                   layer_quantile((s - targets.sigma).abs(), targets, epsilon))


@dataclass(frozen=True)
class GeneratorLoss:
    """What the generator minimizes. All DSG switches off = GDFQ: ce * CE + bn * L_BN."""
    ce_weight: float = 1.0        # CE of the FP32 model on the sampled labels (GDFQ)
    bn_weight: float = 0.1        # GDFQ's weight of the BN-statistics loss
    sda: bool = False             # slack margins on the batch statistics
    epsilon: float = 0.9          # SDA margin quantile
    sda_mode: str = "hinge"       # "hinge" (paper eq. 6) or "reference" (the QAT code's |gap - margin|)
    lse: bool = False             # layer-wise enhancement over groups of the batch
    lse_weight: float = 2.0
    sci: bool = False             # similarity-spectrum decorrelation of the generated batch
    sci_weight: float = 1.0

    def validate(self) -> "GeneratorLoss":
        if self.sda_mode not in SDA_MODES:
            raise ConfigError(f"sda_mode must be one of {', '.join(SDA_MODES)}, not {self.sda_mode!r}")
        if not 0.0 < self.epsilon <= 1.0:
            raise ConfigError(f"epsilon (the slack quantile) must be in (0, 1], not {self.epsilon}")
        if not self.lse_weight >= 1.0:
            raise ConfigError(f"LSE weight must be >= 1 (1 = no enhancement), not {self.lse_weight}")
        for name in ("ce_weight", "bn_weight", "sci_weight"):
            v = getattr(self, name)
            if not (v >= 0 and v != float("inf")):
                raise ConfigError(f"{name} must be a finite number >= 0, not {v}")
        return self


class GeneratorObjective:
    """The generator's loss on one model and batch size, with its constant parts computed once."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...], batch: int, cfg: GeneratorLoss,
                 targets: BNTargets, seed: int = 0, device="cpu"):
        self.cfg, self.targets, self.batch = cfg.validate(), targets, batch
        n = targets.num_layers
        self.groups = min(n, batch // LSE_GROUP_SIZE) if cfg.lse else 0
        if cfg.lse and self.groups < 2:
            raise ConfigError(f"LSE on batch statistics splits the batch into groups of at least {LSE_GROUP_SIZE} "
                              f"samples, one per BN layer: batch size {batch} is too small (use >= "
                              f"{2 * LSE_GROUP_SIZE}) or switch LSE off")
        self.margins = self.group_margins = None
        if cfg.sda:
            self.margins = batch_margins(model, targets, shape, batch, cfg.epsilon, seed=seed, device=device)
            if self.groups:
                self.group_margins = batch_margins(model, targets, shape, batch // self.groups, cfg.epsilon,
                                                   seed=seed, device=device)
        # (G, N): lse_weight - 1 where group g owns layer i (i mod G == g), 0 elsewhere
        self.extra = (losses.lse_weights(n, self.groups, cfg.lse_weight, targets.mu.device).T - 1
                      if self.groups else None)
        self.spectrum = losses.reference_spectrum((batch, *shape), device=targets.mu.device) if cfg.sci else None

    def layer_loss(self, mean: torch.Tensor, std: torch.Tensor, margins: Margins | None) -> torch.Tensor:
        """(rows, N) per-layer loss of rows of statistics: L2 (GDFQ), or the SDA hinge / reference form."""
        if margins is None:
            return losses.bn_l2(mean, std, self.targets)
        delta, gamma = margins.per_channel(self.targets)
        sda = losses.sda if self.cfg.sda_mode == "hinge" else sda_reference
        return sda(mean, std, self.targets, delta, gamma)

    def bn_loss(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """L_BN = (1/N) [ sum_i l_i(batch) + sum_{g,i} (X[g,i] - 1) l_i(group g) ].

        LSE on batch statistics (our choice; the paper's LSE is per sample): the batch is split into
        G = min(N, B/4) interleaved groups, group g owns the layers i with i mod G == g, and each
        layer's loss is counted once more, with weight lse_weight - 1, on the statistics of the
        group that owns it. lse_weight = 1 (or LSE off) leaves GDFQ's batch loss unchanged, so the
        switch adds only the enhancement. (The reference QAT code instead scales channel i of
        layer i by sqrt(2): a per-channel, not a per-sample, weight.)
        """
        whole = self.layer_loss(*batch_stats(mean, std), self.margins).sum()
        if self.extra is not None:
            gm, gs = group_stats(mean, std, self.groups)
            whole = whole + (self.layer_loss(gm, gs, self.group_margins) * self.extra).sum()
        return whole / self.targets.num_layers

    def __call__(self, images: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, named weighted parts) of one generated batch."""
        cfg = self.cfg
        parts = {"ce": cfg.ce_weight * F.cross_entropy(logits, labels),
                 "bn": cfg.bn_weight * self.bn_loss(mean, std)}
        if self.spectrum is not None and images.shape[0] == self.batch:
            parts["sci"] = cfg.sci_weight * losses.sci(images, self.spectrum, self.targets.num_layers)
        return sum(parts.values()), parts
