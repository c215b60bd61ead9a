"""Why does SDA lose at W4A4 with min/max and win at W3A3? The range hypothesis, measured.

    python bench/ranges.py          # reads the quick profile's cached sets and rows; writes docs/ranges.md

docs/results.md guessed that SDA's more spread statistics widen the activation ranges that a global
min/max rule calibrates, and so coarsen the 4-bit grid. For every calibration set of the quick
profile (resnet20_mnist; run `bench/reproduce.py --profile quick` first: nothing is generated here),
the model is calibrated with the min/max rule and each activation quantizer's range (hi - lo) is
divided by the range that real training images give at the same layer (mean over the real sets of
the same seeds). A set's "range ratio" is the geometric mean of that over layers; its top-1 comes
from the reproduction rows.

Caveat (docs/aliasing.md): on these MNIST models a single W4A4 result also depends on where the
constant background's activations fall on each layer's grid, which a few percent of range moves.
The ratios below are measured; how much of a W4A4 cell they explain is limited by that.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from common import Rows, header, rows_file, write_doc
from reproduce import PROFILES, row_key

from dsg_core.diagnostics import activation_ranges, range_ratios
from dsg_core.experiments import SetCache, calibration_set
from dsg_core.generation import GenerationConfig
from dsg_core.models import get_spec, load_model
from dsg_core.sources import SOURCES, source_config

MODEL = "resnet20_mnist"
ROOT = Path(__file__).resolve().parent / "cache" / "quick"


def cached_sets(model, profile: dict):
    """(source, seed, images) for every set the quick profile has cached (real sets are cheap)."""
    cache, spec = SetCache(ROOT / "sets"), get_spec(MODEL)
    for seed in range(profile["seeds"]):
        base = GenerationConfig(samples=profile["samples"], batch_size=profile["samples"],
                                iterations=profile["iterations"], seed=seed)
        for source in SOURCES:
            cfg = source_config(source, base, spec.input_shape[-1])
            if cfg is not None and cfg.uses_bn and cache.get(MODEL, cfg) is None:
                continue  # not generated yet: this script never generates
            yield source, seed, calibration_set(model, spec, source, base, cache=cache)[0]


def accuracies() -> pd.DataFrame:
    rows = Rows(rows_file("quick"), row_key).rows
    df = pd.DataFrame(r for r in rows if r.get("kind") == "main" and r["model"] == MODEL
                      and r["quantizer"] == "minmax" and r["bits"] in ("4/4", "3/3"))
    df = df.drop_duplicates(["source", "seed", "bits"], keep="last")
    return df.pivot_table(index=["source", "seed"], columns="bits", values="top1").rename(
        columns={"4/4": "w4a4", "3/3": "w3a3"}).reset_index()


def main() -> None:
    torch.manual_seed(0)
    profile = PROFILES["quick"]
    model = load_model(MODEL)
    ranges = {(s, seed): activation_ranges(model, x) for s, seed, x in cached_sets(model, profile)}
    real = torch.stack([r for (s, _), r in ranges.items() if s == "real"]).mean(0)
    sets = pd.DataFrame([{"source": s, "seed": seed, **range_ratios(r, real)} for (s, seed), r in ranges.items()])
    df = sets.merge(accuracies(), on=["source", "seed"], how="left")
    syn = df[df.source != "real"].dropna()
    per_source = df.groupby("source")[["range_ratio", "max_layer_ratio", "w4a4", "w3a3"]].agg(["mean", "std"])
    order = [s for s in SOURCES if s in per_source.index]
    lines = [header("Activation ranges of the calibration sets (min/max rule)", timing=False), "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             f"{len(df)} sets ({len(syn)} synthetic with both accuracies); {len(real)} activation quantizers.", "",
             "| source | n | range ratio (geo. mean over layers) | largest layer ratio | W4A4 min/max top-1 "
             "| W3A3 min/max top-1 |",
             "|---|---|---|---|---|---|"]
    for s in order:
        r = per_source.loc[s]
        n = int((df.source == s).sum())
        cell = lambda c, r=r: f"{r[(c, 'mean')]:.2f} ± {0 if pd.isna(r[(c, 'std')]) else r[(c, 'std')]:.2f}"
        acc = lambda c, r=r: "-" if pd.isna(r[(c, "mean")]) else f"{r[(c, 'mean')]:.1f}"
        lines.append(f"| {s} | {n} | {cell('range_ratio')} | {cell('max_layer_ratio')} | {acc('w4a4')} "
                     f"| {acc('w3a3')} |")
    rho = lambda a, b: syn[[a, b]].corr(method="spearman").iloc[0, 1]
    lines += ["", "Spearman rank correlation over the synthetic sets:", "",
              "| | W4A4 min/max top-1 | W3A3 min/max top-1 |", "|---|---|---|",
              *(f"| {name} | {rho(col, 'w4a4'):+.2f} | {rho(col, 'w3a3'):+.2f} |"
                for name, col in (("range ratio (geometric mean)", "range_ratio"),
                                  ("largest layer ratio", "max_layer_ratio"))),
              ""]
    print("\n".join(lines))
    write_doc("ranges.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
