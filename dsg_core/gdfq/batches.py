"""Where the fine-tuning batches come from: a generator trained on the fly, or real images.

Both sources hand out (images, labels, FP32 logits) for a global step index and draw their
randomness from a generator seeded by (seed, step), so a run resumed from a checkpoint sees the
same batches as one that never stopped, without saving any random state.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import NumericalError
from ..generation.generator import batch_seed
from ..generation.stats import BNStats
from .generator import ConditionalGenerator
from .losses import GeneratorObjective

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, labels, FP32 logits


def step_rng(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(batch_seed(seed, step))


class GeneratedBatches:
    """GDFQ's loop: every step draws (z, y), trains G one Adam step against the frozen FP32 model,
    and hands the batch it generated (before the update) to the quantized model, detached."""

    def __init__(self, generator: ConditionalGenerator, teacher: nn.Module, objective: GeneratorObjective,
                 lr: float, batch: int, seed: int, device="cpu"):
        self.generator, self.teacher, self.objective = generator.to(device).train(), teacher, objective
        self.opt = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))  # GDFQ's betas
        self.batch, self.seed, self.device = batch, seed, device
        self.stats = BNStats(teacher, objective.targets.names)

    def next(self, step: int, train: bool = True) -> tuple[Batch, dict[str, float]]:
        """One batch; with ``train``, also one generator step (its loss parts are returned)."""
        z, y = self.generator.sample(self.batch, step_rng(self.seed, step), self.device)
        if not train:
            with torch.no_grad():
                x = self.generator(z, y)
                return (x, y, self.teacher(x)), {}
        with self.stats:
            x = self.generator(z, y)
            logits = self.teacher(x)
            loss, parts = self.objective(x, logits, *self.stats.collect(), y)
        if not torch.isfinite(loss):
            raise NumericalError(f"the generator's loss became {loss.item()} at step {step + 1} "
                                 "(lower the generator learning rate or a loss weight)", iteration=step + 1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return (x.detach(), y, logits.detach()), {"g_loss": loss.item(),
                                                  **{f"g_{k}": v.item() for k, v in parts.items()}}

    @torch.no_grad()
    def calibration(self, n: int) -> torch.Tensor:
        """n generated images in batches of the training size (the last BN normalizes per batch)."""
        gen = step_rng(self.seed, -1)
        out = [self.generator(*self.generator.sample(min(self.batch, n - i), gen, self.device))
               for i in range(0, n, self.batch)]
        return torch.cat(out)

    @torch.no_grad()
    @torch.no_grad()
    def preview(self, max_classes: int = 16) -> dict[str, torch.Tensor]:
        """One image per class (the first ``max_classes``) from fixed latent codes, to watch G train."""
        y = torch.arange(min(self.generator.num_classes, max_classes), device=self.device)
        z = torch.randn((len(y), self.generator.latent_dim), generator=step_rng(self.seed, -2)).to(self.device)
        return {"samples": self.generator(z, y).cpu(), "labels": y.cpu()}

    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "opt_g": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt.load_state_dict(state["opt_g"])


class RealBatches:
    """Real-data fine-tuning, the comparison GDFQ and DSG report: random batches of labelled images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, teacher: nn.Module, batch: int, seed: int,
                 device="cpu"):
        self.images, self.labels, self.teacher = images, labels, teacher
        self.batch, self.seed, self.device = min(batch, len(images)), seed, device

    def next(self, step: int, train: bool = True) -> tuple[Batch, dict[str, float]]:
        idx = torch.randperm(len(self.images), generator=step_rng(self.seed, step))[:self.batch]
        x, y = self.images[idx].to(self.device), self.labels[idx].to(self.device)
        with torch.no_grad():
            return (x, y, self.teacher(x)), {}

    def calibration(self, n: int) -> torch.Tensor:
        idx = torch.randperm(len(self.images), generator=step_rng(self.seed, -1))[:n]
        return self.images[idx].to(self.device)

    def preview(self, max_classes: int = 16) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
