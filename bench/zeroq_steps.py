"""Why does ZeroQ's W4A4 DSG-avg cell on resnet20_mnist fall between 200 and 500 generation steps?

    python bench/zeroq_steps.py --seeds 0,1,2,3,4                # a snapshot every 50 steps
    python bench/zeroq_steps.py --seeds 5,6,7,8,9 --every 200    # steps 0, 200, 400 and 500 only
    python bench/zeroq_steps.py --render-only    # the page from the committed rows

docs/results.md: ZeroQ as published gives 99.0 ± 0.2 at 200 steps and 92.7 ± 5.6 at 500 (10 seeds),
while DSG does not move. This replays each 500-step set of the full profile (same configs, so the
last step is the set `bench/reproduce.py --profile full` cached) with a snapshot every 50 steps (every
200 for seeds 5-9), and
at each snapshot measures what the set is (pixels out of the valid input range, the largest
excursion, the images' mean cosine similarity, the BN-matching loss) and what it calibrates
(W4A4 DSG-avg and W3A3 min/max top-1, each also under range jitter 0.8/1.0/1.2: is a move the data or
the grid's luck?). One row per (source, seed, step) in bench/rows/zeroq-steps.jsonl, resumable.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import torch
from common import Rows, header, rows_file, write_doc
from reproduce import PROFILES

from dsg_core.diagnostics import mean_offdiag_cosine
from dsg_core.diagnostics.pixels import pixel_range_metrics
from dsg_core.experiments import Plan, Resources, parse_bits, quantize_and_evaluate
from dsg_core.experiments.goal import cell_name
from dsg_core.generation import GenerationConfig
from dsg_core.generation.generator import generate
from dsg_core.provenance import check_versions, stamp
from dsg_core.quant import QuantConfig

MODEL = "resnet20_mnist"
SOURCES = ("zeroq", "dsg")
EVERY = 50
CELLS = (("4/4", "dsg-avg"), ("3/3", "minmax"))
JITTER = (0.8, 1.0, 1.2)
ROWS = rows_file("zeroq-steps")


def key(r: dict) -> str:
    return json.dumps([r["source"], r["seed"], r["step"]])


def trajectory(res: Resources, plan: Plan, source: str, seed: int,
               every: int = EVERY) -> list[tuple[int, torch.Tensor, float]]:
    """(step, images after that many steps, BN loss then) every ``every`` steps of one set's generation,
    the returned set last (its step is the config's iterations)."""
    spec, cfg = res.spec, plan.source_config(source, seed, res.spec.input_shape[-1])
    snaps = []

    def on(p) -> None:
        snap = (p.extra or {}).get("snapshot")
        if snap is not None and snap["iteration"] % every == 0:
            snaps.append((snap["iteration"], snap["images"]))

    s = generate(res.model, spec.input_shape, cfg, model_name=MODEL, num_classes=spec.num_classes, progress=on,
                 valid_range=spec.valid_range, snapshot_every=every)
    loss = [h["loss"] for h in s.history]
    return [(t, x, loss[t] if t < len(loss) else float("nan")) for t, x in snaps] + [
        (cfg.iterations, s.images, loss[-1])]


def measure(res: Resources, plan: Plan, step: int, images: torch.Tensor, loss: float, seed: int) -> dict:
    """What the set at one step is and what it calibrates."""
    row = {"step": step, "bn_loss": loss, "cosine": mean_offdiag_cosine(images.flatten(1)),
           **pixel_range_metrics(images, res.spec.valid_range)}
    for bits, q in CELLS:
        (w, a), = parse_bits(bits)
        out = quantize_and_evaluate(res.model, images, plan.quant_config(w, a, q, seed), res.test, jitter=JITTER)
        name = cell_name(bits, q)
        row[name] = out["quant_top1"]
        row[name + " jitter"] = out["range_jitter_mean"]
    return row


def run(seeds: list[int], every: int = EVERY) -> None:
    full = PROFILES["full"]
    gen = GenerationConfig(samples=full["samples"], batch_size=full["samples"], iterations=full["iterations"])
    plan = Plan(MODEL, generation=gen, quant=QuantConfig(recon_iters=full["recon_iters"]))
    res, rows = Resources.load(plan), Rows(ROWS, key)
    for seed in seeds:
        for source in SOURCES:
            if rows.has(source=source, seed=seed, step=full["iterations"]):
                continue
            for step, images, loss in trajectory(res, plan, source, seed, every):
                row = {"model": MODEL, "source": source, "seed": seed,
                       **measure(res, plan, step, images, loss, seed)}
                rows.add({**row, **stamp({"bench": "zeroq-steps", "every": every, **full})})
            print(f"{source} seed {seed}: W4A4 DSG-avg {row['W4A4 dsg-avg']:.1f} at {step} steps", flush=True)


def render(rows: list[dict]) -> str:
    check_versions(rows)
    df = pd.DataFrame(rows).drop_duplicates(["source", "seed", "step"], keep="last")
    out = [header("ZeroQ and DSG along their 500 generation steps (resnet20_mnist)", timing=False),
           __doc__.split("\n\n")[2].replace("\n", " ") + "\n",
           "Mean ± std over the seeds with a snapshot at that step (n; seeds 0-4 every 50 steps, later seeds at "
           "0, 200, 400 and 500). Top-1 % on the 1,000 test images; 'jitter' is the mean over range factors "
           "0.8/1.0/1.2; pixels out of range as % of all pixels.\n"]
    cols = ["W4A4 dsg-avg", "W4A4 dsg-avg jitter", "W3A3 minmax", "W3A3 minmax jitter", "out_of_range_fraction",
            "max_excursion", "cosine", "bn_loss"]
    for source in SOURCES:
        d = df[df.source == source]
        out += [f"## {source}\n", "| step | n | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
        for step, g in d.groupby("step"):
            cells = [_cell(g[c] * (100 if c == "out_of_range_fraction" else 1), 2 if c == "cosine" else 1)
                     for c in cols]
            out.append(f"| {step} | {len(g)} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Seed by seed: 200 steps against 500\n", _seed_table(df),
            "## Across seeds and steps\n", _correlations(df)]
    return "\n".join(out) + "\n"


def _cell(v: pd.Series, digits: int) -> str:
    return f"{v.mean():.{digits}f} ± {v.std(ddof=0):.{digits}f}"


def _seed_table(df: pd.DataFrame) -> str:
    """Each seed's W4A4 DSG-avg top-1, calibrated and under range jitter, at step 200 and at the last step,
    and what they add up to: whether a move is the set's (both move) or the calibrated grid's (only the
    calibrated cell moves), and how ZeroQ and DSG compare at the last step."""
    last = int(df.step.max())
    ends = df[df.step.isin([200, last])].pivot_table(index=["source", "seed"], columns="step",
                                                     values=["W4A4 dsg-avg", "W4A4 dsg-avg jitter"]).dropna()
    lines = [f"W4A4 DSG-avg top-1 at step 200 -> {last}, calibrated ranges and range-jitter mean:\n",
             "| source | seed | calibrated | jitter mean |", "|---|---|---|---|"]
    for (source, seed), r in ends.iterrows():
        a, b = r["W4A4 dsg-avg"], r["W4A4 dsg-avg jitter"]
        lines.append(f"| {source} | {seed} | {a[200]:.1f} -> {a[last]:.1f} | {b[200]:.1f} -> {b[last]:.1f} |")
    lines.append("")
    for source in SOURCES:
        e = ends.loc[source]
        for col, what in (("W4A4 dsg-avg", "calibrated"), ("W4A4 dsg-avg jitter", "jitter mean")):
            up = int((e[col][last] > e[col][200]).sum())
            lines.append(f"- {source}, {what}: {e[col][200].mean():.1f} -> {e[col][last].mean():.1f} "
                         f"(higher at step {last} on {up} of {len(e)} seeds)")
    for step in (200, last):
        both = ends.xs(step, axis=1, level="step").unstack("source")
        for col, what in (("W4A4 dsg-avg", "calibrated"), ("W4A4 dsg-avg jitter", "jitter mean")):
            gap = (both[col]["dsg"] - both[col]["zeroq"]).dropna()
            lines.append(f"- at step {step}, DSG - ZeroQ, {what}: {gap.mean():+.1f} ± {gap.std(ddof=0):.1f} "
                         f"(DSG ahead on {int((gap > 0).sum())} of {len(gap)} seeds)")
    return "\n".join(lines) + "\n"


def _correlations(df: pd.DataFrame) -> str:
    """Spearman of each set property with the W4A4 DSG-avg top-1, over every (seed, step) from 200 on."""
    lines = ["Spearman correlation with W4A4 DSG-avg top-1 over every (seed, step) from step 200 on:\n",
             "| source | out of range | max excursion | cosine | BN loss |", "|---|---|---|---|---|"]
    for source in SOURCES:
        d = df[(df.source == source) & (df.step >= 200)]
        rho = [d["W4A4 dsg-avg"].corr(d[c], method="spearman") for c in
               ("out_of_range_fraction", "max_excursion", "cosine", "bn_loss")]
        lines.append(f"| {source} | " + " | ".join("n/a" if np.isnan(r) else f"{r:+.2f}" for r in rho) + " |")
    return "\n".join(lines) + "\n"


def replay_rows(rows: list[dict]) -> list[dict]:
    """The replay as the Evidence page reads it (``bench/evidence.py --parts steps``): one row per source, seed,
    step and cell, with its top-1, range-jitter mean and share of pixels out of range (the caller checks the
    rows' code versions, with the rows it sits beside)."""
    return [{"source": r["source"], "seed": r["seed"], "step": r["step"], "cell": cell_name(bits, q),
             "top1": r[cell_name(bits, q)], "jitter_mean": r[cell_name(bits, q) + " jitter"],
             "out_of_range": r["out_of_range_fraction"]} for r in rows for bits, q in CELLS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="comma-separated seeds")
    ap.add_argument("--every", type=int, default=EVERY, help="steps between snapshots")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    if not args.render_only:
        run([int(s) for s in args.seeds.split(",")], args.every)
    write_doc("zeroq-steps.md", render(Rows(ROWS, key).rows))


if __name__ == "__main__":
    main()
