"""Experiments: calibration sets by source, quantize-and-evaluate, and whole comparisons.

The dashboard's "Run" and the CLI's ``compare`` both land here. Generated sets are cached on disk
by the hash of (model, config), so a comparison reuses what it already has and resumes after a stop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from .data import real_split
from .errors import ConfigError
from .evaluate import evaluate_quantized
from .generation import GenerationConfig, SyntheticSet, generate_many
from .logit_cache import fp32_logits
from .models import ModelSpec, get_spec, load_model
from .progress import CancelFn, Progress, ProgressFn
from .quant import QuantConfig, quantize_model
from .sources import source_config

BITS_DEFAULT = ((8, 8), (6, 6), (4, 4), (3, 3))

# The default view: W4A4 with ZeroQ's global min/max rule. Measured on resnet20_mnist (5 seeds, 64
# images): Gaussian-noise calibration gives 73.4 +- 14.7 % against 99.2 % FP32 and 98.2 % with real
# images, so the calibration data visibly matters. With DSG's averaged rule W4A4 is saturated (99.1 %
# for noise and real alike); see docs/results-quick.md.
DEFAULT_WBITS, DEFAULT_ABITS, DEFAULT_QUANTIZER = 4, 4, "minmax"


class SetCache:
    """Synthetic sets on disk, keyed by a hash of model name, weights file and generation config."""

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


def _staged(progress: ProgressFn, stage: str) -> ProgressFn:
    """Relabel an engine progress stream, e.g. 'generate' -> 'ZeroQ: generate'."""
    if progress is None:
        return None
    return lambda p: progress(Progress(f"{stage}: {p.stage}", p.step, p.total, p.loss, p.parts, p.extra))


def calibration_set(model: nn.Module, spec: ModelSpec, source: str, base: GenerationConfig, *,
                    cache: SetCache | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
                    device="cpu") -> tuple[torch.Tensor, SyntheticSet | None]:
    """(images, the synthetic set or None for real data) of one source at the base config's seed."""
    return calibration_sets(model, spec, [source], [base], cache=cache, progress=progress, cancel=cancel,
                            device=device)[(source, base.seed)]


def calibration_sets(model: nn.Module, spec: ModelSpec, sources: list[str], bases: list[GenerationConfig], *,
                     cache: SetCache | None = None, progress: ProgressFn = None, cancel: CancelFn = None,
                     device="cpu") -> dict[tuple[str, int], tuple[torch.Tensor, SyntheticSet | None]]:
    """{(source, seed): (images, the synthetic set or None for real data)} for every source at every
    base config (one per seed). The sets not in the cache are generated together by
    ``generate_many``: those that can share a batch (all of them, when the bases differ only in
    their seed) are optimized as one, each equal to generating it alone; a config that two sources
    share is generated once. A stop during that pass caches none of them."""
    out: dict[tuple[str, int], tuple[torch.Tensor, SyntheticSet | None]] = {}
    todo: dict[GenerationConfig, list[tuple[str, int]]] = {}
    for base in bases:
        for source in sources:
            key, cfg = (source, base.seed), source_config(source, base, spec.input_shape[-1])
            s = cache.get(spec.name, cfg) if cache and cfg is not None else None
            if cfg is None:
                out[key] = real_calibration(spec.name, base.samples, base.seed), None
            elif s is not None:
                out[key] = s.images, s
            else:
                todo.setdefault(cfg, []).append(key)
    if todo:
        stage = ", ".join(dict.fromkeys(source for keys in todo.values() for source, _ in keys))
        made = generate_many(model, spec.input_shape, list(todo), model_name=spec.name, num_classes=spec.num_classes,
                             valid_range=spec.valid_range, progress=_staged(progress, stage), cancel=cancel,
                             device=device)
        for (cfg, keys), s in zip(todo.items(), made):
            if cache:
                cache.put(spec.name, cfg, s)
            out.update(dict.fromkeys(keys, (s.images, s)))
    return {(source, base.seed): out[(source, base.seed)] for base in bases for source in sources}


def quantize_and_evaluate(model: nn.Module, calib: torch.Tensor, qcfg: QuantConfig, test_x: torch.Tensor,
                          test_y: torch.Tensor, progress: ProgressFn = None, cancel: CancelFn = None,
                          jitter: tuple[float, ...] | None = None, fp_logits: torch.Tensor | None = None) -> dict:
    """The metrics of ``evaluate_quantized``; with ``jitter`` factors, also top-1 with every activation
    range scaled by each (``quant/jitter.py``: how much of the result is the grid's luck).
    ``fp_logits``: the FP32 model's logits on ``test_x``, when the caller has them already; else
    they come from ``logit_cache`` (computed once per model and images, then read from disk)."""
    q = quantize_model(model, calib, qcfg, progress, cancel)
    fp = fp_logits if fp_logits is not None else fp32_logits(model, test_x)
    res = evaluate_quantized(model, q, test_x, test_y, fp_logits=fp)
    if jitter:
        from .quant.jitter import range_jitter
        accs = range_jitter(model, q, test_x, test_y, tuple(jitter))
        res["range_jitter"] = {f"{f:g}": v for f, v in accs.items()}
        res["range_jitter_spread"] = max(accs.values()) - min(accs.values())
    return res


def parse_bits(text: str) -> list[tuple[int, int]]:
    """'4/4,6/6,8/8' -> [(4, 4), (6, 6), (8, 8)]."""
    out = []
    for part in text.split(","):
        try:
            w, a = part.strip().split("/")
            out.append((int(w), int(a)))
        except ValueError:
            raise ConfigError(f"bit-widths look like W/A, e.g. 4/4; got {part.strip()!r}") from None
    return out


@dataclass
class Comparison:
    rows: list[dict] = field(default_factory=list)
    sets: dict[tuple[str, int], SyntheticSet | None] = field(default_factory=dict)
    calib: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)


def compare(model_name: str, sources: list[str], bits: list[tuple[int, int]], quantizers: list[str],
            seeds: list[int], base: GenerationConfig, qbase: QuantConfig | None = None, *,
            cache_dir: str | Path | None = None, weights: str | None = None, device="cpu",
            progress: ProgressFn = None, cancel: CancelFn = None, eval_limit: int | None = None) -> Comparison:
    """Quantize ``model_name`` with every source x bits x quantizer x seed; one row per combination."""
    spec = get_spec(model_name)
    model = load_model(model_name, weights=weights, device=device)
    qbase = qbase or QuantConfig()
    for (w, a), qz in ((b, q) for b in bits for q in quantizers):  # fail before minutes of generation
        replace(qbase, wbits=w, abits=a, quantizer=qz).validate()
    test_x, test_y = real_split(model_name, "test")
    if eval_limit:
        test_x, test_y = test_x[:eval_limit], test_y[:eval_limit]
    cache, out = SetCache(cache_dir, weights), Comparison()
    test_x, test_y = test_x.to(device), test_y.to(device)
    fp = fp32_logits(model, test_x)  # one FP32 pass for every row
    made = calibration_sets(model, spec, sources, [base.replace(seed=seed) for seed in seeds], cache=cache,
                            progress=_staged(progress, "seeds " + ", ".join(map(str, seeds))), cancel=cancel,
                            device=device)
    for (source, seed), (images, s) in made.items():
        out.sets[(source, seed)], out.calib[(source, seed)] = s, images
        for qz in quantizers:
            for w, a in bits:
                qcfg = replace(qbase, wbits=w, abits=a, quantizer=qz, seed=seed)
                res = quantize_and_evaluate(model, images.to(device), qcfg, test_x, test_y,
                                            _staged(progress, f"{source} W{w}A{a}"), cancel, fp_logits=fp)
                out.rows.append({"model": model_name, "source": source, "wbits": w, "abits": a, "quantizer": qz,
                                 "seed": seed, "top1": res["quant_top1"], "fp32_top1": res["fp32_top1"],
                                 "agreement": res["agreement"], "kl": res["kl"]})
    return out
