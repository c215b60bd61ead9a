"""Adam on the images and the learning-rate schedules, without torch.optim's Optimizer class.

Why: building any ``torch.optim.Optimizer`` imports ``torch._dynamo``, 2-3 s on 2 cores, paid again
by every fresh process that generates: each ``generate`` call of the CLI and each dashboard
generation job. (Reconstruction and QAT still use torch.optim: they train many tensors.) The images
are one tensor, so the class buys nothing. The update is torch's own functional Adam
(``torch.optim.adam.adam``, the function ``torch.optim.Adam.step`` calls), so steps are the same as
the class's. The plateau rule is ``ReduceLROnPlateau``'s, decision for decision; the cosine one is
the closed form, which differs from ``CosineAnnealingLR``'s recursive update in the last bits.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adam import adam

BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults [Kingma & Ba 2015]


class ImageAdam:
    """Adam over one tensor, ``x`` (updated in place from ``x.grad``, or from the ``grad`` given to
    ``step``: ``x`` may be one set's slice of a batch shared by several sets, each with its own Adam
    state and lr); ``lr`` may be changed between steps."""

    def __init__(self, x: torch.Tensor, lr: float):
        self.x, self.lr = x, lr
        self.exp_avg = torch.zeros_like(x, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(x, memory_format=torch.preserve_format)
        self.steps = torch.tensor(0.0)

    @torch.no_grad()
    def step(self, grad: torch.Tensor | None = None) -> None:
        grad = self.x.grad if grad is None else grad
        adam([self.x], [grad], [self.exp_avg], [self.exp_avg_sq], [], [self.steps], amsgrad=False, beta1=BETAS[0],
             beta2=BETAS[1], lr=self.lr, weight_decay=0.0, eps=EPS, maximize=False)


class Plateau:
    """ReduceLROnPlateau's rule with its defaults (ZeroQ's schedule): lr x 0.1, never below
    ``min_lr`` (ZeroQ's code: 1e-4), after more than ``patience`` steps without a relative
    improvement of 1e-4 over the best loss."""

    factor, threshold, min_change = 0.1, 1e-4, 1e-8

    def __init__(self, opt: ImageAdam, patience: int, min_lr: float = 0.0):
        self.opt, self.patience, self.min_lr = opt, patience, min_lr
        self.best, self.bad = math.inf, 0

    def step(self, loss: float) -> None:
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            new = max(self.opt.lr * self.factor, self.min_lr)
            if self.opt.lr - new > self.min_change:
                self.opt.lr = new
            self.bad = 0


class Cosine:
    """Cosine annealing from the initial lr to 0 over ``total`` steps [Loshchilov & Hutter 2017]."""

    def __init__(self, opt: ImageAdam, total: int):
        self.opt, self.total, self.t, self.lr0 = opt, total, 0, opt.lr

    def step(self, loss: float | None = None) -> None:
        self.t += 1
        self.opt.lr = self.lr0 * (1 + math.cos(math.pi * self.t / self.total)) / 2


def make_schedule(opt: ImageAdam, schedule: str, iterations: int, patience: int,
                  min_lr: float = 0.0) -> Plateau | Cosine | None:
    """The learning-rate schedule by name ('constant' is none); ``step(loss)`` after each update.
    ``min_lr`` floors the plateau schedule only."""
    if schedule == "plateau":
        return Plateau(opt, patience, min_lr)
    if schedule == "cosine":
        return Cosine(opt, iterations)
    return None
