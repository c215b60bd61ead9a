"""Calibration sets by source: real images drawn by seed, generated sets cached on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from ..data import real_split
from ..generation import GenerationConfig, SyntheticSet, generate
from ..models import ModelSpec
from ..progress import CancelFn, ProgressFn
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


def generated_set(model: nn.Module, spec: ModelSpec, cfg: GenerationConfig, *, cache: SetCache | None = None,
                  progress: ProgressFn = None, cancel: CancelFn = None, device="cpu") -> SyntheticSet:
    """The set of one generation config: from the cache, else generated (and cached)."""
    s = cache.get(spec.name, cfg) if cache else None
    if s is None:
        s = generate(model, spec.input_shape, cfg, model_name=spec.name, num_classes=spec.num_classes,
                     valid_range=spec.valid_range, progress=progress, cancel=cancel, device=device)
        if cache:
            cache.put(spec.name, cfg, s)
    return s


def calibration_set(model: nn.Module, spec: ModelSpec, source: str, base: GenerationConfig, *,
                    cache: SetCache | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
                    device="cpu") -> tuple[torch.Tensor, SyntheticSet | None]:
    """(images, the synthetic set or None for real data) of one source at the base config's seed."""
    cfg = source_config(source, base, spec.input_shape[-1])
    if cfg is None:
        return real_calibration(spec.name, base.samples, base.seed), None
    s = generated_set(model, spec, cfg, cache=cache, progress=progress, cancel=cancel, device=device)
    return s.images, s
