"""Which change to the reference objective widens its activation ranges? (issue 18, item 5)

    python bench/recipes.py --stage select            # every variant, seeds 0-2, both embedded models
    python bench/recipes.py --stage test --variants reference,X   # the chosen ones, seeds 0-9, all models
    python bench/recipes.py --render                   # docs/recipes.md from the rows

`docs/best.md` found where the recipe then shipped as `best` (the reference objective, pixels clamped
after; named `reference` here) falls short of real data: its calibrated activation ranges are narrower
than real data's (0.73x on resnet20, 0.58x on the held-out VGG) and its top-1 climbs as the ranges are
widened. Its images use little of the valid pixel range: the reference starts from U[0,1) in normalized
units (MNIST's valid range is about -0.42 to 2.82) and pulls every image towards zero with its L2 prior.
Each variant here changes one point of that objective. Stage ``select`` screens them on the two
embedded models (three seeds, the four range-rule cells); stage ``test`` measures, at ten seeds and with
issue 18's six goal cells (W3A3 and W4A4 with min/max, DSG-avg and AdaRound), `reference` and the one
variant that widens the ranges (the diagnosed cause) without failing most screened cells: `no-sda`.
`no-tv-l2` widens them most but failed the screen; it was measured on two held-out models only, as a
test of the range explanation. Real data is measured in the same run, seed for seed.

The rule, fixed before the ten-seed results: the variant that meets the goal's tests against real data
(top-1 and jitter mean within 0.5 points of real's or above, top-1 std at most 1 point) in the most of
the twelve embedded cells replaces the shipped recipe; a tie keeps it. ``vgg_bn_mnist`` was measured for
the screened variants to test the range explanation, so it is no longer held out for this choice; the
held-out test is ``allconv_bn_mnist`` (``bench/unseen_model.py``), trained after the rule was fixed.

The rule's outcome was a tie (`reference` and `no-sda` 7 of 12 embedded cells), so the shipped recipe
stayed; on both held-out models `no-sda` met more cells (5 and 4 of 6, against 2 and 1). Stated before it
ran, the confirmation: on a third held-out model, ``lenet_bn_mnist`` (trained after those results),
`no-sda` meets more goal cells than `reference`. Only if it does is `no-sda` the recommended change (the
outcome below says whether it did; ``dsg_core/generation/config.py`` ships the result as `best`).

Resumable: rows go to bench/rows/recipes.jsonl (one line per set and cell) and are skipped when
there; several processes (``--shard i/n``) can share the file.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import pandas as pd
import torch
from best import like_recipes
from best import read as read_results
from common import Rows, header, register_models, rows_file, write_doc

from dsg_core.diagnostics import activation_ranges, range_ratios
from dsg_core.experiments.goal import GOAL_CELLS as GOAL
from dsg_core.experiments.goal import RANGE_CELLS, against_real, bits_text
from dsg_core.experiments.goal import cell_name as bits_cell
from dsg_core.experiments.plan import Plan
from dsg_core.experiments.run import Resources, quantize_and_evaluate
from dsg_core.experiments.sets import SetCache, generated_sets, real_calibration
from dsg_core.generation.config import preset
from dsg_core.provenance import check_versions, stamp
from dsg_core.quant import QuantConfig

CACHE = Path(__file__).resolve().parent / "cache" / "recipes"
ROWS, PEERS = rows_file("recipes"), rows_file("peers")  # bench/peers.py quality: MCT's generator, same seeds and cells
EMBEDDED = ("resnet20_mnist", "mobilenetv2_mnist")
HELD_OUT = ("vgg_bn_mnist", "allconv_bn_mnist", "lenet_bn_mnist")  # bench/unseen_model.py
INCUMBENT, CONFIRMATION = "reference", "lenet_bn_mnist"  # the recipe the rule could replace; the pre-stated test
# one point of the reference objective (pixels clamped after) changed each, its other settings kept
VARIANTS = {
    "reference": ({}, "the reference objective, pixels clamped after: the `best` preset until the confirmation held"),
    "gaussian-start": (dict(init="gaussian"), "N(0,1) start instead of U[0,1)"),
    "no-l2": (dict(l2_weight=0.0), "no L2 prior"),
    "no-tv-l2": (dict(tv_weight=0.0, l2_weight=0.0), "no TV and no L2 prior"),
    "no-ce": (dict(ce_weight=0.0), "no label cross-entropy"),
    "no-sda": (dict(sda=False), "no SDA (exact BN matching, LSE and SCI kept): the `best` preset now"),
    "gaussian-start-no-l2": (dict(init="gaussian", l2_weight=0.0), "N(0,1) start and no L2 prior"),
}
GOAL_CELLS = RANGE_CELLS + tuple(c for c in GOAL if c not in RANGE_CELLS)  # range rules first, then AdaRound
STAGES = {"select": dict(models=EMBEDDED, seeds=range(3), cells=RANGE_CELLS),
          "test": dict(models=(*EMBEDDED, *HELD_OUT), seeds=range(10), cells=GOAL_CELLS)}
JITTER = (0.8, 1.0, 1.2)
SAMPLES, ITERATIONS, RECON_ITERS = 64, 200, 100  # the control's settings (bench/reproduce.py)


def key(r: dict) -> tuple:
    return r["model"], r["variant"], r["seed"], r.get("cell")


def variant_config(variant: str, image_size: int, seed: int):
    """The variant's generation config at the control's size and seed."""
    return preset("reference", image_size=image_size, pixel_range="clamp-after", samples=SAMPLES,
                  batch_size=SAMPLES, iterations=ITERATIONS, seed=seed, **VARIANTS[variant][0])


def calibration(res: Resources, model_name: str, variant: str, seed: int, cache: SetCache) -> torch.Tensor:
    if variant == "real":
        return real_calibration(model_name, SAMPLES, seed, res.pool)
    cfg = variant_config(variant, res.spec.input_shape[-1], seed)
    return generated_sets(res.model, res.spec, {0: cfg}, cache=cache)[0].images


def one_set(res: Resources, model_name: str, variant: str, seed: int, cells, rows: Rows, cache: SetCache) -> None:
    """Every missing row of one (model, variant, seed): its range ratio, then each cell with jitter."""
    base = dict(model=model_name, variant=variant, seed=seed)
    todo = [c for c in cells if not rows.has(**base, cell=cell_name(c))]
    if rows.has(**base, cell=None) and not todo:
        return
    t0 = time.time()
    x = calibration(res, model_name, variant, seed, cache)
    prov = stamp({**base, "samples": SAMPLES, "iterations": ITERATIONS, "recon_iters": RECON_ITERS})
    if not rows.has(**base, cell=None):
        real = real_calibration(model_name, SAMPLES, seed, res.pool)
        ratio = range_ratios(activation_ranges(res.model, x), activation_ranges(res.model, real))
        rows.add({**base, "cell": None, **ratio, **prov})
    for w, a, q in todo:
        out = quantize_and_evaluate(res.model, x, QuantConfig(wbits=w, abits=a, quantizer=q, seed=seed,
                                                              recon_iters=RECON_ITERS), res.test, jitter=JITTER)
        rows.add({**base, "cell": cell_name((w, a, q)), "top1": out["quant_top1"],
                  "jitter_mean": out["range_jitter_mean"], **{f"at_{f}": v for f, v in out["range_jitter"].items()},
                  **prov})
    print(f"{model_name} {variant} seed {seed}: {time.time() - t0:.0f} s", flush=True)


def cell_name(c: tuple[int, int, str]) -> str:
    """(3, 3, "minmax") -> "W3A3 minmax", as bench/best.py names its cells."""
    w, a, q = c
    return bits_cell(bits_text(w, a), q)


def run_stage(stage: str, variants: list[str], models: list[str] | None, shard: tuple[int, int]) -> None:
    spec = STAGES[stage]
    register_models("unseen_model")
    rows, cache = Rows(ROWS, key), SetCache(CACHE / "sets")
    k = 0
    for seed in spec["seeds"]:  # seeds outermost: partial results cover every variant
        for model_name in models or spec["models"]:
            res = resources(model_name)
            for variant in ["real", *variants]:
                if k % shard[1] == shard[0]:
                    one_set(res, model_name, variant, seed, spec["cells"], rows, cache)
                k += 1


@functools.cache
def resources(model_name: str) -> Resources:
    """The model, its test split and its pool of real images, loaded once per process."""
    return Resources.load(Plan(model_name))


# ------------------------------------------------------------------------------------------ render
def render(allow_mixed: bool = False) -> str:
    rows = Rows(ROWS, key).rows
    mixed = check_versions(rows, allow_mixed=allow_mixed)  # refuses rows of several code versions unless allowed
    df = pd.DataFrame(rows)
    ratio, cells = df[df.cell.isna()], df[df.cell.notna()]
    out = [header("Widening the reference objective's activation ranges: one change at a time (how `best` was chosen)",
                  timing=False), "", *mixed,
           *(para.strip() + "\n" for para in __doc__.split("\n\n")[2:5]),
           f"64 images, {ITERATIONS} generation iterations, AdaRound {RECON_ITERS} Adam steps per layer, pixels "
           "clamped to the valid range after generation (as in `best`). Top-1 % on the 1,000-image MNIST test "
           "split, mean ± std over seeds (n); jitter mean: top-1 averaged over every calibrated activation "
           "range scaled by 0.8, 1, 1.2. Range ratio: the set's min/max activation ranges over those of the "
           "same seed's 64 real images (geometric mean over layers). The `reference` and `real` rows are remade "
           "here beside the variants and reproduce the control's numbers (`docs/pixel-range-sources.md`, "
           "`dsg-reference` clamped after) for the same seeds; `docs/best.md`'s goal tables are the `no-sda` "
           "rows.", "", "Variants:", ""]
    out += [f"- `{v}`: {d}" for v, (_, d) in VARIANTS.items()] + [""]
    for model_name in [m for m in (*EMBEDDED, *HELD_OUT) if m in set(df.model)]:
        out += model_table(model_name, ratio[ratio.model == model_name], cells[cells.model == model_name])
    out += goal_section(cells)
    out += mct_section(cells, read_results(PEERS))
    return "\n".join(out) + "\n"


def mct_section(cells: pd.DataFrame, mct: pd.DataFrame) -> list[str]:
    """Each variant of ten seeds beside MCT's generator (``bench/peers.py``, its default pipeline) at
    the cells MCT was measured at: top-1 (jitter mean), and whether the variant is at least as good in
    both, as issue 18 asks."""
    mct = like_recipes(mct[mct.source == "mct"])  # its AdaRound cells with our steps
    mct = mct.assign(cell=[bits_cell(b, q) for b, q in zip(mct.bits, mct.quantizer)])
    ten = cells[cells.groupby(["model", "variant", "cell"]).seed.transform("nunique") >= STAGES["test"]["seeds"].stop]
    out = []
    for model_name in [m for m in (*EMBEDDED, *HELD_OUT) if m in set(mct.model) and m in set(ten.model)]:
        mm, tm = mct[mct.model == model_name], ten[ten.model == model_name]
        names = [c for c in (cell_name(c) for c in GOAL_CELLS) if c in set(mm.cell) and c in set(tm.cell)]
        out += [f"### {model_name}", "", "| variant | " + " | ".join(names) + " | >= MCT |",
                "|---" * (len(names) + 2) + "|"]
        out.append("| MCT | " + " | ".join(fmt(mm[mm.cell == c]) for c in names) + " | |")
        for v in [v for v in ("real", *VARIANTS) if v in set(tm.variant)]:
            at = [tm[(tm.variant == v) & (tm.cell == c)] for c in names]
            ok = sum(a.top1.mean() >= mm[mm.cell == c].top1.mean() and
                     a.jitter_mean.mean() >= mm[mm.cell == c].jitter_mean.mean() for a, c in zip(at, names))
            out.append(f"| {v} | " + " | ".join(fmt(a) for a in at) + f" | {ok} / {len(names)} |")
        out.append("")
    if not out:
        return []
    return ["## Against MCT's generator", "",
            "MCT's default pipeline, 10 seeds, from `bench/peers.py quality` (`docs/peers.md`; its own run, the same "
            f"seeds, images, iterations and cells, its AdaRound cells with our {RECON_ITERS} steps), at the cells it "
            "was measured at. Top-1 mean ± std (jitter mean); >= MCT: cells where both are at least MCT's.", "", *out]


def goal_met(cells: pd.DataFrame) -> pd.DataFrame:
    """Per variant, model and cell: issue 18's tests against real data of the same seeds — top-1 and
    jitter mean within 0.5 points of real's (or above), std over seeds at most 1 point."""
    out = []
    for (model_name, cell), part in cells.groupby(["model", "cell"]):
        real = part[part.variant == "real"]
        if real.empty:
            continue
        for v, p in part[part.variant != "real"].groupby("variant"):
            r = real[real.seed.isin(p.seed)]
            tests = against_real(p.top1, p.jitter_mean, r.top1, r.jitter_mean)
            out.append(dict(model=model_name, cell=cell, variant=v, seeds=len(p),
                            **{**tests, "std": tests["std"] if len(p) > 1 else None}))
    return pd.DataFrame(out)


def goal_section(cells: pd.DataFrame) -> list[str]:
    """Cells where each variant meets the goal's tests, per model: how the variants are chosen."""
    met = goal_met(cells)
    if met.empty:
        return []
    met = met.assign(all=met.top1 & met.jitter & met["std"].fillna(True).astype(bool))
    models = [m for m in (*EMBEDDED, *HELD_OUT) if m in set(met.model)]
    out = ["## Against real data, cell by cell", "",
           "Cells where the variant's top-1 and jitter mean are within 0.5 points of real data's (same seeds) or "
           "above, and its top-1 std over seeds is at most 1 point (issue 18's tests, without MCT's): met / cells "
           "measured. A variant is chosen on the embedded models only.", "",
           "| variant | " + " | ".join(models) + " | embedded models together |", "|---" * (len(models) + 2) + "|"]
    for v in [v for v in VARIANTS if v in set(met.variant)]:
        mv = met[met.variant == v]
        per = [f"{int(mv[mv.model == m]['all'].sum())} / {int((mv.model == m).sum())}" if (mv.model == m).any()
               else "-" for m in models]
        emb = mv[mv.model.isin(EMBEDDED)]
        out.append(f"| {v} | " + " | ".join(per) + f" | {int(emb['all'].sum())} / {len(emb)} |")
    return out + ["", outcome(met), ""]


def outcome(met: pd.DataFrame) -> str:
    """The rule applied: among the variants measured in every embedded cell at ten seeds, the one
    meeting the most embedded cells replaces the incumbent; a tie with it keeps it. Then the held-out
    models' counts, which played no part in it, and the confirmation stated before its model was trained."""
    full = met[met.model.isin(EMBEDDED) & (met.seeds >= STAGES["test"]["seeds"].stop)]
    cells = len(EMBEDDED) * len(GOAL_CELLS)
    counts = {v: int(g["all"].sum()) for v, g in full.groupby("variant") if len(g) == cells}
    if INCUMBENT not in counts or len(counts) < 2:
        return (f"**The rule:** not applied yet (it needs `{INCUMBENT}` and another variant in every embedded "
                "cell at ten seeds).")
    top = max(counts.values())
    winners = [v for v, c in counts.items() if c == top]
    chosen = INCUMBENT if INCUMBENT in winners else winners[0]
    said = ", ".join(f"`{v}` {c} / {cells}" for v, c in sorted(counts.items(), key=lambda kv: -kv[1]))
    ties = [w for w in winners if w != INCUMBENT]
    verdict = (f"`{INCUMBENT}` stays" + (f" (tied with {', '.join(f'`{w}`' for w in ties)})" if ties else "")
               if chosen == INCUMBENT else f"`{chosen}` replaces `{INCUMBENT}`")
    held = {m: {v: int(g["all"].sum()) for v, g in met[(met.model == m) & (met.seeds >= STAGES["test"]["seeds"].stop)]
                .groupby("variant")} for m in HELD_OUT}
    said_held = "; ".join(f"{m}: " + ", ".join(f"`{v}` {c} / {len(GOAL_CELLS)}" for v, c in h.items())
                          for m, h in held.items() if h)
    out = f"**The rule** (embedded cells met at ten seeds): {said}, so {verdict}."
    if said_held:
        out += f" Held-out models, ten seeds (no part in the rule): {said_held}."
    return out + confirmation(chosen, winners, held.get(CONFIRMATION, {}))


def confirmation(chosen: str, winners: list[str], held: dict[str, int]) -> str:
    """On a tie, the test stated beforehand: the tied variant ships only if it meets more cells than the
    incumbent on the confirmation model."""
    ties = [w for w in winners if w != INCUMBENT]
    if chosen != INCUMBENT or not ties or INCUMBENT not in held:
        return ""
    rival = ties[0]
    if rival not in held:
        return f" The confirmation on {CONFIRMATION} has not run yet."
    if held[rival] > held[INCUMBENT]:
        return (f" **The confirmation held** ({CONFIRMATION}: `{rival}` {held[rival]}, `{INCUMBENT}` "
                f"{held[INCUMBENT]}), so `{rival}` is the `best` preset now.")
    return (f" The confirmation did not hold ({CONFIRMATION}: `{rival}` {held[rival]}, `{INCUMBENT}` "
            f"{held[INCUMBENT]}), so `{INCUMBENT}` stays the `best` preset.")


def model_table(model_name: str, ratio: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    names = [c for c in (cell_name(c) for c in GOAL_CELLS) if c in set(cells.cell)]
    order = [v for v in ("real", *VARIANTS) if v in set(cells.variant)]
    out = [f"## {model_name}", "", "| variant | n | range ratio | " + " | ".join(names) + " | mean of cells |",
           "|---" * (len(names) + 4) + "|"]
    for v in order:
        cv = cells[cells.variant == v]
        n = cv.seed.nunique()
        r = ratio[ratio.variant == v].range_ratio
        per_seed = cv.pivot_table(index="seed", columns="cell", values="top1").reindex(columns=names).mean(axis=1)
        vals = [fmt(cv[cv.cell == c]) for c in names]
        out.append(f"| {v} | {n} | {r.mean():.2f} | " + " | ".join(vals) + f" | {per_seed.mean():.1f} |")
    return out + ["", "Each cell: top-1 mean ± std (jitter mean).", ""]


def fmt(c: pd.DataFrame) -> str:
    if c.empty:
        return "-"
    return f"{c.top1.mean():.1f} ± {c.top1.std(ddof=0):.1f} ({c.jitter_mean.mean():.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=list(STAGES))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    ap.add_argument("--models", help="comma-separated; default: the stage's")
    ap.add_argument("--shard", default="0/1", help="i/n: this process's share of the sets")
    ap.add_argument("--render", action="store_true", help="write docs/recipes.md from the rows")
    ap.add_argument("--allow-mixed", action="store_true", help="render rows of several code versions")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.stage:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
        i, n = (int(p) for p in args.shard.split("/"))
        run_stage(args.stage, variants, args.models.split(",") if args.models else None, (i, n))
    if args.render:
        write_doc("recipes.md", render(args.allow_mixed))


if __name__ == "__main__":
    main()
