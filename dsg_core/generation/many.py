"""Several synthetic sets in one pass: seeds and sources optimized as one batch.

Why: on the CPU an image costs less in a larger batch (2.28 ms at batch 64, 1.71 ms at 256 for
resnet20_mnist on 2 cores, docs/performance.md) and every pass has a fixed cost, so S sets of n
images are cheaper as one batch of S x n than as S batches of n.

Why it changes nothing: in eval mode every sample's forward pass is independent of the others, and
each set's loss reads only its own images: the BN terms (ZeroQ's L2, SDA, LSE) are per sample, and
SCI and the priors are computed per set by viewing the batch as (S, n, ...). The gradient of the
sum of the sets' losses with respect to a set's images is that set's own gradient. Each set keeps
its own Adam state and learning-rate schedule (ReduceLROnPlateau acts on its own loss), pixel-range
mode, labels and jitter stream, so every set equals ``generate()`` run alone on its config, to float
tolerance (tests/test_generation_many.py).

Sets share a pass when they have the same samples, batch size and iterations: their batches must
run in lockstep. Other sets run in passes of their own, one after another, as do sets beyond what
fits in memory at once. Gaussian sets need no optimization and are drawn as ``generate()`` draws them.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

from ..errors import Cancelled, NumericalError
from ..progress import CancelFn, Progress, ProgressFn
from ..resources import check_generation_fits, fit_batch_size, retain_freed_memory
from . import losses
from .config import GenerationConfig
from .generator import (
    Objective,
    PixelRange,
    _result,
    batch_labels,
    batch_seed,
    batches,
    check_precision,
    fast_copy,
    forward_fn,
    generate,
    initial_images,
    jittered,
)
from .optim import ImageAdam, make_schedule
from .stats import BNStats
from .synthetic_set import SyntheticSet

PARTS = ("input", "sci", "ce", "tv", "l2")  # the optional terms, in the order Objective adds them


class SetsObjective:
    """The objectives of S sets that share a batch of S x n images, computed together: set s's
    loss is its own :class:`Objective`'s on its n images, term for term, normalised by its own n."""

    def __init__(self, objectives: list[Objective], n: int):
        self.targets, self.sets, self.n = objectives[0].targets, len(objectives), n
        self.spectrum = objectives[0].spectrum
        cfgs = [o.cfg for o in objectives]
        margins = [o.margins.per_channel(self.targets) if o.margins else None for o in objectives]
        self.hinge = None
        if any(m is not None for m in margins):  # zero margins are ZeroQ's L2 exactly
            zero = (torch.zeros_like(self.targets.mu),) * 2
            self.hinge = tuple(torch.stack(m).repeat_interleave(n, 0) for m in zip(*(m or zero for m in margins)))
        lse = [o.lse_matrix(n) for o in objectives]
        ones = torch.ones(n, self.targets.num_layers, device=self.targets.mu.device)
        self.lse = None if all(x is None for x in lse) else torch.stack([ones if x is None else x for x in lse])
        weights = {"input": [1.0 if c.input_prior else None for c in cfgs],
                   "sci": [c.sci_weight if c.components.sci and c.sci_weight and n > 1 else None for c in cfgs],
                   "ce": [c.ce_weight or None for c in cfgs],
                   "tv": [c.tv_weight or None for c in cfgs],
                   "l2": [c.l2_weight or None for c in cfgs]}
        self.keys = [["bn", *(p for p in PARTS if weights[p][s] is not None)] for s in range(self.sets)]
        self.terms = {p: self._term(w) for p, w in weights.items() if any(v is not None for v in w)}
        self.forms = {"tv": [c.tv_form for c, w in zip(cfgs, weights["tv"]) if w is not None],
                      "l2": [c.l2_form for c, w in zip(cfgs, weights["l2"]) if w is not None]}

    def _term(self, weights: list[float | None]) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(indices of the sets that have the term, None for all; their weights)."""
        on = [s for s, w in enumerate(weights) if w is not None]
        device = self.targets.mu.device
        idx = None if len(on) == self.sets else torch.tensor(on, device=device)
        return idx, torch.tensor([weights[s] for s in on], device=device)

    def _value(self, name: str, images: torch.Tensor, priors: torch.Tensor, logits: torch.Tensor,
               labels: torch.Tensor | None):
        if name == "input":
            return losses.input_prior(images)
        if name == "sci":
            return losses.sci(images, self.spectrum((self.n, *images.shape[2:])), self.targets.num_layers, sets=1)
        if name == "ce":
            return losses.cross_entropy(logits, labels)
        return self._prior(name, priors)

    def _prior(self, name: str, images: torch.Tensor) -> torch.Tensor:
        """TV or L2 of the sets that have it, each set in its own form (``forms``, in the order of the
        term's sets); with mixed forms each form present is computed on all of them."""
        forms, table = self.forms[name], losses.TV_FORMS if name == "tv" else losses.L2_FORMS
        if len(set(forms)) == 1:
            return table[forms[0]](images)
        values = {f: table[f](images) for f in set(forms)}
        return torch.stack([values[f][s] for s, f in enumerate(forms)])

    def __call__(self, images: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 labels: torch.Tensor | None, priors: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(loss per set (S,), named parts per set (S,) each, 0 where a set lacks the part, per-layer
        loss per set (S, N) averaged over its samples). ``labels``: (S * n,), any value for sets without CE.
        ``priors``: the images TV and L2 see (as ``Objective``'s), else ``images``."""
        s, n = self.sets, self.n
        layer = (losses.bn_l2(mean, std, self.targets) if self.hinge is None else
                 losses.sda(mean, std, self.targets, *self.hinge)).view(s, n, -1)
        parts = {"bn": losses.weighted_mean(layer, self.lse)}
        priors = images if priors is None else priors
        args = (images.view(s, n, *images.shape[1:]), priors.reshape(s, n, *images.shape[1:]), logits.view(s, n, -1),
                None if labels is None else labels.view(s, n))
        for name, (idx, weight) in self.terms.items():
            value = weight * self._value(name, *(a if idx is None or a is None else a[idx] for a in args))
            parts[name] = value if idx is None else value.new_zeros(s).index_copy(0, idx, value)
        return sum(parts.values()), parts, layer.detach().mean(1)


def shared_passes(cfgs: list[GenerationConfig]) -> list[list[int]]:
    """Indices of the configs that need optimization, grouped by what lets them share a batch."""
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, c in enumerate(cfgs):
        if c.uses_bn:
            groups.setdefault((c.samples, c.batch_size, c.iterations), []).append(i)
    return list(groups.values())


def _fitting(group: list[int], n: int, model: nn.Module, shape: tuple[int, ...], device) -> list[list[int]]:
    """The group in chunks whose joint batch fits in memory (one set must fit, as in generate())."""
    check_generation_fits(model, shape, n, device)
    per_pass = max(1, fit_batch_size(model, shape, len(group) * n, device) // n)
    return [group[i:i + per_pass] for i in range(0, len(group), per_pass)]


def generate_many(model: nn.Module, input_shape: tuple[int, ...], cfgs: list[GenerationConfig], *,
                  model_name: str = "", num_classes: int | None = None,
                  valid_range: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                  progress: ProgressFn = None, cancel: CancelFn = None, device: str | torch.device = "cpu",
                  precision: str = "fp32", snapshot_every: int = 0) -> list[SyntheticSet]:
    """One synthetic set per config, in order, each equal to ``generate(model, input_shape, cfg, ...)``
    to float tolerance, with the sets that can share a batch optimized as one (see the module doc).

    ``progress`` gets one record per joint iteration: the mean loss and parts over the sets of the
    pass, ``extra["sets"]`` (their indices in ``cfgs``) and ``extra["set_loss"]``, ``extra["set_lr"]``.
    ``snapshot_every=k``: as ``generate``'s, ``extra["snapshots"]`` = {config index: snapshot of its
    first batch} every k iterations (and the first and last).
    ``seconds`` of a set is its share of its pass's wall time. Raises NumericalError naming the set
    whose loss became NaN/Inf (with that set's last finite images) and Cancelled with ``partial``
    = {config index: the images of its batches so far}.
    """
    cfgs = [c.validate() for c in cfgs]
    check_precision(precision)
    model, shape = model.eval(), tuple(input_shape)
    pixels = [PixelRange(c.pixel_range, valid_range, device) for c in cfgs]  # refuses before any work
    out: list[SyntheticSet | None] = [
        None if c.uses_bn else generate(model, shape, c, model_name=model_name, num_classes=num_classes,
                                        valid_range=valid_range) for c in cfgs]
    groups = shared_passes(cfgs)
    if not groups:
        return out
    chunks = [chunk for g in groups for chunk in _fitting(g, min(cfgs[g[0]].samples, cfgs[g[0]].batch_size),
                                                            model, shape, device)]
    retain_freed_memory()
    fast = fast_copy(model, shape, device)
    objectives = {i: Objective.build(fast, shape, cfgs[i], device, num_classes) for g in groups for i in g}
    total = sum(len(batches(cfgs[c[0]].samples, cfgs[c[0]].batch_size)) * cfgs[c[0]].iterations for c in chunks)
    with BNStats(fast, objectives[groups[0][0]].targets.names) as stats:
        run = _Run(forward_fn(fast, device, precision), stats, cfgs, pixels, num_classes, progress, cancel, total)
        run.snapshot_every = snapshot_every
        for chunk in chunks:
            t0 = time.perf_counter()
            run.chunk(chunk, [objectives[i] for i in chunk], shape, device)
            share = round((time.perf_counter() - t0) / len(chunk), 3)
            for i in chunk:
                out[i] = _result(run.done[i], run.labels[i], cfgs[i], model_name, objectives[i].margins,
                                 run.history[i], t0)
                out[i].seconds = share
    return out


class _Run:
    """The state of one generate_many call across its passes: finished batches, labels, histories."""

    def __init__(self, forward, stats: BNStats, cfgs: list[GenerationConfig], pixels: list[PixelRange],
                 num_classes: int | None, progress: ProgressFn, cancel: CancelFn, total: int):
        self.forward, self.stats, self.cfgs, self.pixels = forward, stats, cfgs, pixels
        self.num_classes, self.progress, self.cancel, self.total, self.step = num_classes, progress, cancel, total, 0
        self.done: dict[int, list[torch.Tensor]] = {}
        self.labels: dict[int, list[torch.Tensor]] = {}
        self.history: dict[int, list[dict]] = {}
        self.snapshot_every = 0

    def chunk(self, sets: list[int], objectives: list[Objective], shape: tuple[int, ...], device) -> None:
        """Optimize the sets ``sets`` (indices into cfgs) together, batch by batch."""
        cfg = self.cfgs[sets[0]]
        for i in sets:
            self.done[i], self.labels[i], self.history[i] = [], [], []
        for k, n in batches(cfg.samples, cfg.batch_size):
            labels = [batch_labels(n, self.cfgs[i], self.num_classes, k)
                      if self.cfgs[i].ce_weight or self.cfgs[i].targets else None for i in sets]
            x0 = torch.cat([initial_images(n, shape, self.cfgs[i], k) for i in sets]).to(device)
            images = self._optimize(sets, SetsObjective(objectives, n), x0, labels, k)
            for i, x, y in zip(sets, images.split(n), labels):
                self.done[i].append(self.pixels[i].at_end(x))
                if y is not None:
                    self.labels[i].append(y)

    def _optimize(self, sets: list[int], objective: SetsObjective, x: torch.Tensor,
                  labels: list[torch.Tensor | None], batch_index: int) -> torch.Tensor:
        """One batch of every set in ``sets``: the loop of generator._optimize, with per-set state."""
        cfgs, n = [self.cfgs[i] for i in sets], objective.n
        if x.dim() == 4 and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        own = [x.detach()[s * n:(s + 1) * n] for s in range(len(sets))]  # views: updates in place reach x
        for i, xs in zip(sets, own):
            self.pixels[i].each_step(xs)
        x.requires_grad_(True)
        opts = [ImageAdam(xs, c.lr) for xs, c in zip(own, cfgs)]
        scheds = [make_schedule(o, c.schedule, c.iterations, c.plateau_patience, c.lr_floor)
                  for o, c in zip(opts, cfgs)]
        gens = [torch.Generator().manual_seed(batch_seed(c.seed, batch_index) + 2) for c in cfgs]
        jitter = any(c.jitter for c in cfgs)
        y = None
        if any(t is not None for t in labels):
            y = torch.cat([t if t is not None else torch.zeros(n, dtype=torch.long) for t in labels]).to(x.device)
        for t in range(cfgs[0].iterations):
            if self.cancel is not None and self.cancel():
                raise Cancelled(partial=self._partial(sets, own))
            seen, priors = x, x
            if jitter:
                pairs = [jittered(xs, c, g) for xs, c, g in zip(x.split(n), cfgs, gens)]
                seen, priors = (torch.cat(p) for p in zip(*pairs))
            logits = self.forward(seen)
            mean, std = self.stats.collect()
            snaps = self._snapshots(sets, x, mean, std, n, t) if batch_index == 0 else None
            loss, parts, layer = objective(x, logits, mean, std, y, priors)
            x.grad = None
            loss.sum().backward(inputs=[x])
            grads = x.grad.split(n)
            self._check_finite(sets, loss, grads, own, batch_index * cfgs[0].iterations + t + 1)
            for i, o, g, xs in zip(sets, opts, grads, own):
                o.step(g)
                self.pixels[i].each_step(xs)
            self._record(sets, objective, loss, parts, layer, opts, scheds, batch_index, t, snaps)
        return x.detach().contiguous()

    def _snapshots(self, sets: list[int], x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, n: int,
                   t: int) -> dict | None:
        """Every set's images and per-sample statistics before step t, when a snapshot is due."""
        k = self.snapshot_every
        if not k or not (t % k == 0 or t == self.cfgs[sets[0]].iterations - 1):
            return None
        xs, ms, ss = x.detach().cpu().split(n), mean.detach().cpu().split(n), std.detach().cpu().split(n)
        return {i: {"iteration": t, "images": a.clone(), "mean": b, "std": c} for i, a, b, c in zip(sets, xs, ms, ss)}

    def _partial(self, sets: list[int], own: list[torch.Tensor]) -> dict[int, list[torch.Tensor]]:
        current = dict(zip(sets, own))
        return {i: done + ([current[i].clone()] if i in current else []) for i, done in self.done.items()}

    def _check_finite(self, sets: list[int], loss: torch.Tensor, grads, own, iteration: int) -> None:
        finite = torch.isfinite(loss) & torch.stack([torch.isfinite(g).all() for g in grads])
        if bool(finite.all()):
            return
        s = int((~finite).nonzero()[0])
        i, cfg = sets[s], self.cfgs[sets[s]]
        raise NumericalError(f"{cfg.label} (seed {cfg.seed}): the loss became {loss[s].item()} at iteration "
                             f"{iteration}: stopped, the images before that step are kept (lower the learning "
                             "rate or a weight)", iteration=iteration,
                             last_good=torch.cat(self.done[i] + [own[s].clone()]))

    def _record(self, sets, objective: SetsObjective, loss, parts, layer, opts, scheds, batch_index: int,
                t: int, snapshots: dict | None = None) -> None:
        """History records and schedule steps from one read-back of every set's loss and parts."""
        names = list(parts)
        table = torch.stack([loss.detach(), *(parts[p].detach() for p in names)], 1).tolist()
        for s, (i, row) in enumerate(zip(sets, table)):
            if scheds[s] is not None:
                scheds[s].step(row[0])
            values = dict(zip(names, row[1:]))
            self.history[i].append({"batch": batch_index, "iteration": t + 1, "loss": row[0],
                                    **{k: values[k] for k in objective.keys[s]}})
        self.step += 1
        if self.progress is not None:
            records = [self.history[i][-1] for i in sets]
            mean_parts = {p: statistics.fmean(r[p] for r in records if p in r) for p in names}
            self.progress(Progress("generate", self.step, self.total, statistics.fmean(r["loss"] for r in records),
                                   mean_parts, {"layer_loss": layer.mean(0).tolist(), "sets": list(sets),
                                                "set_loss": [r["loss"] for r in records],
                                                "set_lr": [o.lr for o in opts],
                                                **({"snapshots": snapshots} if snapshots else {})}))
