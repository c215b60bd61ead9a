"""The evidence bundle: what ``bench/evidence.py`` measured over many seeds, as data frames.

The bundle (``docs/data/evidence.json.gz``, committed) is made by one command from the reproduction
rows and records the code version and command that made it. Reading it needs no model and no torch
work, so the Evidence page draws in a second. No Streamlit here: the page and the tests share it.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

BUNDLE = Path(os.environ.get("DSG_EVIDENCE_BUNDLE") or
              Path(__file__).resolve().parents[1] / "docs" / "data" / "evidence.json.gz")


@dataclass(frozen=True)
class Bundle:
    meta: dict
    models: dict           # model -> facts (fp32_top1, valid_range, layers, bn)
    cells: pd.DataFrame    # model, source, pixel_range, seed, bits, quantizer, top1, jitter_mean
    metrics: pd.DataFrame  # model, source, pixel_range, seed, metric values
    examples: list[dict]   # one seed per (model, source, pixel_range[, variant]): images, predictions, stats
    variants: pd.DataFrame  # small multiples: model, family, variant, seed, bits, quantizer, top1, jitter_mean, spread
    snapshots: list[dict]  # per-sample statistics over iterations (the replay)
    goal: pd.DataFrame = field(default_factory=pd.DataFrame)  # `best`, real and MCT at issue 18's goal cells:
    # model, set, seed, bits, quantizer, top1, jitter_mean, held_out (empty in a bundle made before it)
    jitter_grid: dict = field(default_factory=dict)  # bench/layer_jitter.py: model, cell, goal_factors, grid (set,
    # seed, factor, top1 with every activation range scaled by factor), finding (markdown lines); empty before it
    steps: dict = field(default_factory=dict)  # bench/evidence.py --parts steps: model (the replayed one), iterations
    # (500), cells (bench/reproduce.py --profile control-full: a frame like ``cells`` at the paper's steps), replay
    # (bench/zeroq_steps.py: source, seed, step, cell, top1, jitter_mean, out_of_range per snapshot), rows, command
    # what the page derives from the bundle (figures, verdicts), made once per process: the bundle is
    # loaded once, so every visitor after the first (and the first, after ``dashboard.serve`` warmed it)
    # gets ready figures instead of rebuilding a dozen charts
    derived: dict = field(default_factory=dict, compare=False, repr=False)

    def memo(self, make: Callable[..., Any], *args) -> Any:
        """``make(self, *args)`` once per (make, args) for this bundle; callers must not mutate the result."""
        key = (make.__name__, *args)
        if key not in self.derived:
            self.derived[key] = make(self, *args)
        return self.derived[key]

    def example(self, model: str, source: str, pixel_range: str = "free", variant: str | None = None) -> dict | None:
        for e in self.examples:
            if (e["model"], e["source"], e.get("pixel_range", "free"), e.get("variant")) == \
                    (model, source, pixel_range, variant):
                return e
        return None


def images_of(example: dict) -> np.ndarray:
    """(N, H, W) uint8 pixels of an example's sample grid."""
    raw = np.frombuffer(base64.b64decode(example["images"]), dtype=np.uint8)
    return raw.reshape(example["shape"])


@lru_cache(maxsize=2)
def load(path: str | Path = BUNDLE) -> Bundle | None:
    """The bundle, or None when it is missing (a fresh clone always has it; a broken one says so)."""
    path = Path(path)
    if not path.is_file():
        return None
    d = json.loads(gzip.decompress(path.read_bytes()))
    return Bundle(meta=d["meta"], models=d["models"], cells=pd.DataFrame(d["cells"]),
                  metrics=pd.DataFrame(d["metrics"]), examples=d.get("examples", []),
                  variants=pd.DataFrame(d.get("variants", [])), snapshots=d.get("snapshots", []),
                  goal=pd.DataFrame(d.get("goal", [])), jitter_grid=d.get("jitter_grid", {}),
                  steps=_frames(d.get("steps", {}), ("cells", "replay")))


def _frames(part: dict, keys: tuple[str, ...]) -> dict:
    """``part`` with its lists of rows at ``keys`` as data frames (missing ones empty)."""
    return {**part, **{k: pd.DataFrame(part.get(k, [])) for k in keys}} if part else {}


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min, max and n of top-1 (and of the range-jitter mean) per model, source, pixel
    range and cell."""
    keys = ["model", "source", "pixel_range", "bits", "quantizer"]
    g = cells.groupby(keys)
    out = g["top1"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = g["top1"].std(ddof=0).values
    if "jitter_mean" in cells:
        out["jitter"] = g["jitter_mean"].mean().values
    return out


def gap(cells: pd.DataFrame, model: str, bits: str, quantizer: str, pixel_range: str,
        a: str = "dsg", b: str = "zeroq") -> tuple[float, float, int] | None:
    """(mean top-1 of ``a`` minus ``b``, the same for the range-jitter means, seeds) at one cell."""
    sel = cells[(cells.model == model) & (cells.bits == bits) & (cells.quantizer == quantizer)
                & (cells.pixel_range == pixel_range)]
    va, vb = sel[sel.source == a], sel[sel.source == b]
    if not len(va) or not len(vb):
        return None
    jit = (va["jitter_mean"].mean() - vb["jitter_mean"].mean()) if "jitter_mean" in sel else float("nan")
    return float(va.top1.mean() - vb.top1.mean()), float(jit), int(min(len(va), len(vb)))
