"""Calibration sets by source: real images drawn by seed, generated sets cached on disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from ..data import real_split
from ..generation import GenerationConfig, SyntheticSet, generate_many
from ..generation.generator import PixelRange
from ..models import ModelSpec
from ..progress import CancelFn, Progress, ProgressFn
from ..sources import source_config


class SetCache:
    """Synthetic sets on disk, keyed by a hash of model name, weights file and generation config, so a
    comparison reuses what it already has and resumes after a stop."""

    def __init__(self, root: str | Path | None, weights: str | Path | None = None):
        self.root = Path(root) if root else None
        self.weights_id = file_digest(weights) if weights and weights != "random" else str(weights)

    def path(self, model: str, cfg: GenerationConfig) -> Path | None:
        if self.root is None:
            return None
        ident = [model, self.weights_id, cfg.to_dict()]
        key = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
        return self.root / model / f"{key}.safetensors"

    def get(self, model: str, cfg: GenerationConfig) -> SyntheticSet | None:
        p = self.path(model, cfg)
        return SyntheticSet.load(p) if p is not None and p.exists() else None

    def put(self, model: str, cfg: GenerationConfig, s: SyntheticSet) -> None:
        p = self.path(model, cfg)
        if p is not None:
            s.save(p)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def real_calibration(model_name: str, n: int, seed: int, pool: torch.Tensor | None = None) -> torch.Tensor:
    """n real images, a seeded random subset (different seeds, different images) of ``pool``,
    by default the model's training split."""
    x = real_split(model_name, "train")[0] if pool is None else pool
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx]


def generated_sets(model: nn.Module, spec: ModelSpec, cfgs: dict, *, cache: SetCache | None = None,
                   fresh=(), progress: ProgressFn = None, cancel: CancelFn = None, device="cpu",
                   snapshot_every: int = 0) -> dict:
    """{key: set} for every ``cfgs`` entry: read from the cache, else (and always for the keys in
    ``fresh``) generated together by ``generate_many`` — one forward+backward per iteration for all
    of them, each set equal to generating it alone — and cached; a config two keys share is made
    once. ``progress`` gets generate_many's joint records with ``extra["keys"]``: the keys of each
    index in ``extra["sets"]``. A stop during the pass caches none of its sets.

    A ``clamp-after`` set is the free set of the same config clamped once at the end (the optimization
    never sees the range), so it is made from that set — read, or shared in the pass — and costs no
    generation of its own."""
    out, todo = {}, {}
    for key, cfg in cfgs.items():
        cfg = made_as(cfg)
        hit = cache.get(spec.name, cfg) if cache is not None and key not in fresh else None
        if hit is not None:
            out[key] = hit
        else:
            todo.setdefault(cfg, []).append(key)
    if todo:
        out.update(_generate(model, spec, todo, cache, progress, cancel, device, snapshot_every))
    return {key: clamped_after(out[key], cfg, spec, device) for key, cfg in cfgs.items()}


def made_as(cfg: GenerationConfig) -> GenerationConfig:
    """The config whose set a set of ``cfg`` is made from: the free one for ``clamp-after``."""
    return cfg.replace(pixel_range="free") if cfg.pixel_range == "clamp-after" else cfg


def clamped_after(s: SyntheticSet, cfg: GenerationConfig, spec: ModelSpec, device) -> SyntheticSet:
    """``s`` as ``cfg`` asks: clamped to the valid input range when ``cfg`` is ``clamp-after``."""
    if cfg.pixel_range != "clamp-after":
        return s
    images = PixelRange(cfg.pixel_range, spec.valid_range, device).at_end(s.images.to(device).clone())
    return replace(s, images=images, config=cfg.to_dict())


def _generate(model: nn.Module, spec: ModelSpec, todo: dict, cache: SetCache | None, progress: ProgressFn,
              cancel: CancelFn, device, snapshot_every: int) -> dict:
    """{key: set} of ``todo`` ({config: its keys}), generated in one ``generate_many`` call and cached."""
    out = {}
    keys = list(todo.values())

    def report(p: Progress) -> None:
        progress(Progress(p.stage, p.step, p.total, p.loss, p.parts, {**p.extra, "keys": keys}))
    made = generate_many(model, spec.input_shape, list(todo), model_name=spec.name, num_classes=spec.num_classes,
                         valid_range=spec.valid_range, progress=report if progress else None, cancel=cancel,
                         device=device, snapshot_every=snapshot_every)
    for (cfg, same), s in zip(todo.items(), made):
        if cache is not None:
            cache.put(spec.name, cfg, s)
        out.update(dict.fromkeys(same, s))
    return out


def calibration_sets(model: nn.Module, spec: ModelSpec, sources: list[str], bases: list[GenerationConfig], *,
                     cache: SetCache | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
                     device="cpu") -> dict[tuple[str, int], tuple[torch.Tensor, SyntheticSet | None]]:
    """{(source, seed): (images, the synthetic set or None for real data)} for every source at every
    base config (one per seed), the missing sets generated in one pass (``generated_sets``)."""
    cfgs = {(src, b.seed): source_config(src, b, spec.input_shape[-1]) for b in bases for src in sources}
    made = generated_sets(model, spec, {k: c for k, c in cfgs.items() if c is not None}, cache=cache,
                          progress=progress, cancel=cancel, device=device)
    samples = {b.seed: b.samples for b in bases}
    return {k: (made[k].images, made[k]) if k in made else (real_calibration(spec.name, samples[k[1]], k[1]), None)
            for k in cfgs}


def calibration_set(model: nn.Module, spec: ModelSpec, source: str, base: GenerationConfig, *,
                    cache: SetCache | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
                    device="cpu") -> tuple[torch.Tensor, SyntheticSet | None]:
    """(images, the synthetic set or None for real data) of one source at the base config's seed."""
    return calibration_sets(model, spec, [source], [base], cache=cache, progress=progress, cancel=cancel,
                            device=device)[(source, base.seed)]
