"""Is a low-bit result the calibration data's doing, or the grid's luck?

Where inputs have large constant regions (MNIST's background), a constant's rounding error is an
offset over the whole region, set by where the constant falls between two grid points. A few
percent of range moves it, and on the embedded models a single W4A4 top-1 moves by tens of points
(docs/aliasing.md). Re-evaluating with every calibrated activation range scaled by common factors
measures that: a result that holds over 0.8-1.2x is the data's; one that swings is partly luck.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Collection, Iterator

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..evaluate import logits, top1_of
from .modules import act_quantizers

DEFAULT_FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2)
SPAN_FACTORS = (0.8, 1.0, 1.2)  # the span's ends and middle: the evidence bundle and the live Run, 2 evaluations fewer


@contextmanager
def scaled_ranges(q_model: nn.Module, factor: float, only: Collection[str] | None = None) -> Iterator[nn.Module]:
    """Every calibrated activation range [lo, hi] of ``q_model`` (or those of the quantizers named in
    ``only``: which layer's range a result hangs on) as [factor lo, factor hi] inside the block,
    restored after it (weights untouched)."""
    if not factor > 0:
        raise ConfigError(f"a range factor must be > 0, got {factor}")
    quants = {n: q for n, q in act_quantizers(q_model).items() if bool(q.calibrated) and (only is None or n in only)}
    base = {n: (float(q.lo), float(q.hi)) for n, q in quants.items()}
    try:
        for n, q in quants.items():
            q.set_range(base[n][0] * factor, base[n][1] * factor)
        yield q_model
    finally:
        for n, q in quants.items():
            q.set_range(*base[n])


def range_jitter(fp_model: nn.Module, q_model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                 factors: tuple[float, ...] = DEFAULT_FACTORS, known: dict[float, float] | None = None
                 ) -> dict[float, float]:
    """{factor: top-1 %} of ``q_model`` with its activation ranges scaled by each factor; without
    labels, the % of inputs on which it agrees with ``fp_model``. ``known`` results (e.g. factor 1,
    which is the plain evaluation the caller already has) are taken as they are, not recomputed."""
    reference = y if y is not None else logits(fp_model, x).argmax(1)
    out = {}
    for f in factors:
        if known and f in known:
            out[f] = known[f]
            continue
        with scaled_ranges(q_model, f):
            out[f] = top1_of(logits(q_model, x), reference)
    return out
