"""Which activation range decides resnet20_mnist's W3A3 AdaRound collapse under range jitter.

`docs/best.md`'s one clear miss against MCT: `best` gives 97.5 at its calibrated ranges but 21.5 with
every activation range scaled by 0.8 (real data 77.9), while the former recipe (`reference` in
`bench/recipes.py`, with SDA), whose ranges are narrower on average (0.73 of real data's against 0.89),
keeps 97.3 as its jitter mean. An average over layers cannot say which range does it. Here, after
AdaRound has fixed the weights at the calibrated ranges, each activation range is scaled by 0.8 alone
(the others as calibrated), and every range but one is scaled: the ranges whose scaling alone breaks
the model, and whose sparing saves it, are the cause. Each range alone is also scaled by more factors
(0.5-1.25: a slope, or a cliff at one factor?), and every range together on a denser grid (0.7-1.3 in
steps of 0.05) than the goal's three factors, with MCT's set beside ours and real data.

    python bench/layer_jitter.py                  # rows -> bench/rows/layer-jitter.jsonl, page -> docs/layer-jitter.md
    PYTHONPATH=. /work/peers-venv/bin/python bench/layer_jitter.py --variants mct   # MCT beside (docs/peers.md)
    python bench/layer_jitter.py --render-only --bundle   # and the dashboard's share of the evidence bundle
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import recipes
from common import DOCS, Rows, header, patch_bundle, rows_file, write_doc

from dsg_core.diagnostics import named_activation_ranges
from dsg_core.evaluate import logits, top1_of
from dsg_core.experiments.sets import SetCache, real_calibration
from dsg_core.provenance import check_versions, stamp, versions
from dsg_core.quant import QuantConfig, act_quantizers, quantize_model
from dsg_core.quant.jitter import scaled_ranges

MODEL, CELL, FACTOR = "resnet20_mnist", (3, 3, "adaround"), 0.8
SWEEP = (0.5, 0.6, 0.7, 0.9, 1.1, 1.25)  # one range alone at more factors: a cliff at one width, or a slope?
DENSE = tuple(round(0.7 + 0.05 * i, 2) for i in range(13) if i != 6)  # every range, 0.7-1.3 without 1: is
# the goal's three-factor jitter (0.8 / 1.0 / 1.2) a fair sample of the curve, or does one factor land on a cliff?
VARIANTS = ("no-sda", "reference", "real", "mct")  # `best`, the former recipe, real data (bench/recipes.py's
# names), MCT's generator with its defaults (bench/peers.py's `mct`; only from the peers venv: docs/peers.md)
NAMES = {"no-sda": "best", "reference": "reference (SDA)", "real": "real", "mct": "MCT"}
SETS = {"no-sda": "Best", "reference": "Reference (SDA)", "real": "Real", "mct": "MCT"}  # the dashboard's set names


def key(r: dict) -> tuple:
    return r["variant"], r["seed"]


def calibration(res, variant: str, seed: int, cache: SetCache):
    """The 64 images of ``variant`` and ``seed``: MCT's from bench/peers.py (200 iterations, as its quality rows)."""
    if variant != "mct":
        return recipes.calibration(res, MODEL, variant, seed, cache)
    import peers  # imports MCT only when its set is not cached
    return peers.mct_set(res, "mct", samples=recipes.SAMPLES, iterations=recipes.ITERATIONS, seed=seed,
                         cache=peers.CACHE)


def one_row(res, variant: str, seed: int, cache: SetCache) -> dict:
    """AdaRound at the calibrated ranges, then top-1 with ranges scaled: all (on the dense grid), each alone
    (at 0.8 and on the sweep), all but each."""
    x = calibration(res, variant, seed, cache)
    real = real_calibration(MODEL, recipes.SAMPLES, seed, res.pool)
    w, a, q = CELL
    qm = quantize_model(res.model, x, QuantConfig(wbits=w, abits=a, quantizer=q, seed=seed,
                                                   recon_iters=recipes.RECON_ITERS))
    acc = lambda m: top1_of(logits(m, res.test.x), res.test.y)
    names = list(act_quantizers(qm))

    def scaled(only: list[str], factor: float = FACTOR) -> float:
        with scaled_ranges(qm, factor, only=only):
            return acc(qm)

    ours, theirs = named_activation_ranges(res.model, x), named_activation_ranges(res.model, real)
    dense = [scaled(names, f) for f in DENSE]  # FACTOR among them: every range x0.8 is read from here
    return dict(variant=variant, seed=seed, top1=acc(qm), all_scaled=dense[DENSE.index(FACTOR)],
                alone={n: scaled([n]) for n in names}, spared={n: scaled([m for m in names if m != n]) for n in names},
                ratio={n: ours[n] / max(theirs[n], 1e-8) for n in names},
                sweep={n: [scaled([n], f) for f in SWEEP] for n in names}, sweep_factors=list(SWEEP),
                dense=dense, dense_factors=list(DENSE))


def run(seeds: range, variants: list[str], rows: Rows) -> None:
    res = recipes.resources(MODEL)
    cache = SetCache(recipes.CACHE / "sets")
    for seed in seeds:
        for variant in variants:
            if rows.has(variant=variant, seed=seed):
                continue
            t0 = time.time()
            row = one_row(res, variant, seed, cache)
            rows.add({**row, **stamp(dict(model=MODEL, variant=variant, seed=seed, cell=list(CELL), factor=FACTOR,
                                          recon_iters=recipes.RECON_ITERS))})
            print(f"{variant} seed {seed}: {row['top1']:.1f} -> {row['all_scaled']:.1f} ({time.time() - t0:.0f} s)",
                  flush=True)


def layer_table(rows: list[dict]) -> pd.DataFrame:
    """Per layer and variant, means over seeds: range ratio to real data's, top-1 with that range scaled
    alone, top-1 with every other range scaled."""
    recs = [dict(variant=r["variant"], seed=r["seed"], layer=n, ratio=r["ratio"][n], alone=r["alone"][n],
                 spared=r["spared"][n]) for r in rows for n in r["alone"]]
    df = pd.DataFrame(recs)
    order = list(dict.fromkeys(df.layer))
    out = df.groupby(["layer", "variant"])[["ratio", "alone", "spared"]].mean().unstack("variant")
    return out.reindex(order)


def culprits(rows: list[dict], variant: str = "no-sda", drop: float = 10.0) -> list[str]:
    """The layers whose range scaled alone costs ``variant`` at least ``drop`` points on average."""
    df = pd.DataFrame([dict(layer=n, loss=r["top1"] - r["alone"][n]) for r in rows if r["variant"] == variant
                       for n in r["alone"]])
    if df.empty:
        return []
    mean = df.groupby("layer", sort=False).loss.mean()
    return [n for n, v in mean.items() if v >= drop]


def render(rows: list[dict], allow_mixed: bool = False) -> str:
    mixed = check_versions(rows, allow_mixed=allow_mixed)
    out = [header("Which activation range breaks resnet20_mnist's W3A3 AdaRound under range jitter", timing=False),
           __doc__.split("\n\n")[1].replace("\n", " "), ""]
    if mixed:
        out += mixed
    if not rows:
        return "\n".join(out + ["(not run yet)"]) + "\n"
    df = pd.DataFrame(rows)
    seeds = sorted(df.seed.unique())
    out += [f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), 64 images, 200 generation iterations, AdaRound "
            f"100 Adam steps per layer at the calibrated ranges; top-1 % on the 1,000-image MNIST test split, "
            f"means over seeds.", "", "| set | calibrated | every range x0.8 |", "|---|---|---|"]
    for v in VARIANTS:
        s = df[df.variant == v]
        if len(s):
            out.append(f"| {NAMES[v]} | {s.top1.mean():.1f} ± {s.top1.std(ddof=0):.1f} | "
                       f"{s.all_scaled.mean():.1f} ± {s.all_scaled.std(ddof=0):.1f} |")
    t = layer_table(rows)
    present = [v for v in VARIANTS if v in df.variant.unique()]
    cols = [f"{NAMES[v]}: {what}" for what in ("range / real", "this range x0.8", "all others x0.8") for v in present]
    out += ["", "Per activation range (the model's order): its min/max range over real data's, top-1 with only "
            "this range scaled by 0.8, and top-1 with every range but this one scaled.", "",
            "| range | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for layer, r in t.iterrows():
        vals = [f"{r[('ratio', v)]:.2f}" for v in present] + [f"{r[(k, v)]:.1f}" for k in ("alone", "spared")
                                                                for v in present]
        out.append(f"| {layer} | " + " | ".join(vals) + " |")
    for n in culprits(rows):
        out += sweep_lines(rows, n, t)
    out += dense_lines(rows)
    out += ["", *dense_summary(rows), "", *finding(rows, t), "", *dense_finding(rows)]
    return "\n".join(out) + "\n"


def factor_means(recs: list[dict]) -> pd.DataFrame:
    """Mean top-1 over seeds per variant (rows, in VARIANTS' order) and range factor (columns)."""
    if not recs:
        return pd.DataFrame()
    t = pd.DataFrame(recs).groupby(["variant", "factor"]).top1.mean().unstack("factor")
    return t.reindex([v for v in VARIANTS if v in t.index])


def sweep_table(rows: list[dict], layer: str) -> pd.DataFrame:
    """Mean top-1 per variant (rows) with only ``layer``'s range scaled by each factor (columns; 1 is the
    calibrated model, 0.8 the `alone` column)."""
    recs = []
    for r in rows:
        pts = {1.0: r["top1"], FACTOR: r["alone"][layer]}
        pts.update(zip(r.get("sweep_factors", []), r.get("sweep", {}).get(layer, [])))
        recs += [dict(variant=r["variant"], factor=f, top1=v) for f, v in pts.items()]
    return factor_means(recs)


def first_break(row: pd.Series, drop: float = 10.0) -> float | None:
    """The largest factor below 1 at which top-1 is ``drop`` points or more below the calibrated one."""
    below = [f for f in sorted(row.index, reverse=True) if f < 1 and row[1.0] - row[f] >= drop]
    return below[0] if below else None


def lowest_kept(row: pd.Series, drop: float = 10.0) -> float:
    """The smallest factor down to which (from 1) top-1 stays within ``drop`` points of the calibrated one."""
    kept = 1.0
    for f in sorted((f for f in row.index if f < 1), reverse=True):
        if row[1.0] - row[f] >= drop:
            break
        kept = f
    return kept


def recoveries(row: pd.Series, broke: float, drop: float = 10.0) -> list[float]:
    """The factors below ``broke`` at which top-1 is back within ``drop`` points of the calibrated one."""
    return [g for g in sorted(row.index) if g < broke and row[1.0] - row[g] < drop]


def shape_text(row: pd.Series, broke: float, drop: float = 10.0) -> str:
    """Does `best` stay broken below the first factor that breaks it (a width too narrow), or recover at a
    narrower one (where the range puts the grid points decides: the aliasing of docs/aliasing.md)?"""
    if back := recoveries(row, broke, drop):
        at = ", ".join(f"x{g:g}: {row[g]:.1f}" for g in back)
        return (f"It is not a slope: narrower still, `best` recovers ({at}), so where this range puts the grid "
                "points decides, not how wide it is (the grid aliasing of `docs/aliasing.md`).")
    lo = min(row.index)
    return f"Narrower still it stays broken (x{lo:g}: {row[lo]:.1f})."


def cliffs_text(s: pd.Series) -> str:
    """Where each other set's top-1 first falls 10 points with this range alone scaled down."""
    parts = []
    for v, r in s.drop("no-sda").iterrows():
        f = first_break(r)
        parts.append(f"{NAMES[v]} at x{f:g} ({r[f]:.1f})" if f is not None else
                     f"{NAMES[v]} nowhere from x{min(r.index):g} to x1")
    return ("The other sets' cliffs on this range alone (the first factor below x1 that costs 10 points, means over "
            "seeds): " + "; ".join(parts) + ".")


def sweep_lines(rows: list[dict], layer: str, t: pd.DataFrame) -> list[str]:
    s = sweep_table(rows, layer)
    out = ["", f"`{layer}` alone at more factors (top-1, means over seeds; x1 is the calibrated model), and the "
           "range at the first factor that costs 10 points or more, in units of real data's range:", "",
           "| set | " + " | ".join(f"x{f:g}" for f in s.columns) + " | first 10-point loss |",
           "|---" * (len(s.columns) + 2) + "|"]
    for v, r in s.iterrows():
        f = first_break(r)
        at = "none down to x{:g}".format(min(s.columns)) if f is None else \
            f"x{f:g} = {f * t.loc[layer, ('ratio', v)]:.2f} of real data's"
        out.append(f"| {NAMES[v]} | " + " | ".join(f"{x:.1f}" for x in r) + f" | {at} |")
    return out


def dense_table(rows: list[dict]) -> pd.DataFrame:
    """Per variant (rows), mean top-1 over seeds with every range scaled by each factor (columns, 1 = calibrated)."""
    return factor_means([dict(variant=r["variant"], factor=f, top1=v) for r in rows if "dense" in r
                         for f, v in [(1.0, r["top1"]), *zip(r["dense_factors"], r["dense"])]])


def dense_lines(rows: list[dict]) -> list[str]:
    """The goal's jitter mean (x0.8, x1, x1.2) beside the mean over a dense grid of factors: one factor on a cliff
    weighs a third of the first and a thirteenth of the second."""
    d = dense_table(rows)
    if d.empty:
        return []
    goal = [f for f in (0.8, 1.0, 1.2) if f in d.columns]
    out = ["", "Every range scaled by one factor, on a denser grid (top-1, means over seeds):", "",
           "| set | " + " | ".join(f"x{f:g}" for f in d.columns) + " | mean at x0.8 / x1 / x1.2 | mean x0.7-x1.3 |",
           "|---" * (len(d.columns) + 3) + "|"]
    for v, r in d.iterrows():
        out.append(f"| {NAMES[v]} | " + " | ".join(f"{x:.1f}" for x in r) + f" | {r[goal].mean():.1f} | "
                   f"{r.mean():.1f} |")
    return out


def dense_finding(rows: list[dict]) -> list[str]:
    """`best` against real data with every range scaled: at the goal's three factors and over the dense grid."""
    d = dense_table(rows)
    if d.empty or not {"no-sda", "real"} <= set(d.index):
        return []
    goal = [f for f in (0.8, 1.0, 1.2) if f in d.columns]
    g, a = d[goal].mean(axis=1), d.mean(axis=1)
    gap_g, gap_a = g["no-sda"] - g["real"], a["no-sda"] - a["real"]
    order = ("the denser grid keeps that order" if (gap_g >= 0) == (gap_a >= 0) else
             "the denser grid reverses that order")
    others = [v for v in d.index if v not in ("no-sda", "real")]
    return [f"**Every range at once:** at the goal's factors (x0.8 / x1 / x1.2) `best` averages {g['no-sda']:.1f} "
            f"against real data's {g['real']:.1f} ({gap_g:+.1f}); over x0.7-x1.3 in steps of 0.05, "
            f"{a['no-sda']:.1f} against {a['real']:.1f} ({gap_a:+.1f}): {order}."
            + "".join(f" {NAMES[v][:1].upper() + NAMES[v][1:]}: {g[v]:.1f} at the goal's factors, {a[v]:.1f} over "
                      "the dense grid." for v in others)
            + " The lowest factor-point of each: "
            + ", ".join(f"{NAMES[v]} {d.loc[v].min():.1f} at x{d.loc[v].idxmin():g}" for v in d.index) + "."]


def width_text(t: pd.DataFrame, n: str, s: pd.DataFrame, broke: float) -> list[str]:
    """Where `best` stays broken: is the width that breaks it one the other calibrations survive?"""
    width = broke * t.loc[n, ("ratio", "no-sda")]
    kept = {v: lowest_kept(s.loc[v]) for v in s.index if v != "no-sda"}
    survive = [f"{NAMES[v]} ({g * t.loc[n, ('ratio', v)]:.2f} of real data's at x{g:g}: {s.loc[v, g]:.1f})"
               for v, g in kept.items() if g * t.loc[n, ("ratio", v)] < width]
    if not survive:
        return [f"No other set keeps its top-1 with this range narrower than {width:.2f} of real data's."]
    return [f"The width that breaks `best` ({width:.2f} of real data's range) is not too narrow in itself: narrower "
            "ones keep the other calibrations within 10 points: " + "; ".join(survive) + ". What breaks is how "
            "`best`'s quantized model (its AdaRound weights, fitted with this range as calibrated) depends on this "
            "one range."]


def dense_summary(rows: list[dict]) -> list[str]:
    """The takeaway of the dense grid in one sentence: where each set's cliff lies (every range scaled down),
    whether the goal's x0.8 falls on `best`'s, and how `best` ranks over the whole grid."""
    d = dense_table(rows)
    if d.empty or "no-sda" not in d.index:
        return []
    breaks = {v: first_break(r) for v, r in d.iterrows()}
    where = "; ".join(f"{NAMES[v]} at x{f:g}" if f is not None else f"{NAMES[v]} nowhere down to x{min(d.columns):g}"
                      for v, f in breaks.items())
    nearest = max((f for f in breaks.values() if f is not None), default=None)
    low = d.loc["no-sda"].idxmin()
    on = (f"`best`'s cliff is the nearest to x1, and its lowest point is at x{low:g} ({d.loc['no-sda', low]:.1f}), "
          "one of the three factors the goal's jitter mean averages"
          if nearest is not None and breaks["no-sda"] == nearest and low in (0.8, 1.2) else "")
    means = d.mean(axis=1).sort_values()
    rank = list(means.index).index("no-sda") + 1
    standing = (f"still the least robust of the {len(means)} sets" if rank == 1 else
                f"ahead of {rank - 1} of the other {len(means) - 1} sets")
    ahead = [f for f in d.columns if all(d.loc["no-sda", f] > d.loc[v, f] + 10 for v in d.index if v != "no-sda"
                                          and v != "reference")]
    return [f"**What this shows:** with every range scaled down, top-1 falls off a cliff (the first factor below "
            f"x1 that costs 10 points): {where}" + (f"; {on}" if on else "") + ". Over the "
            f"whole grid `best` is {standing} by its mean (" + ", ".join(f"{NAMES[v]} {m:.1f}" for v, m in
                                                                         means.items()) + ")"
            + (f", though past the other cliffs, at x{', x'.join(f'{f:g}' for f in ahead)}, it stays more than 10 "
               "points above real data and MCT" if ahead and {"real", "mct"} <= set(d.index) else "") + "."]


def finding(rows: list[dict], t: pd.DataFrame) -> list[str]:
    """The takeaway, computed: which ranges break `best` alone, whether sparing them saves it, and whether
    what breaks it is the range's width (a slope) or where it puts the grid points (a cliff it recovers from)."""
    bad = culprits(rows)
    if not bad:
        return ["**Finding:** no single range scaled alone costs `best` 10 points or more: the collapse comes "
                "from several ranges together."]
    df = pd.DataFrame(rows)
    b = df[df.variant == "no-sda"]
    others = [n for n in t.index if n not in bad]
    worst_other = max((b.top1.mean() - t.loc[n, ("alone", "no-sda")] for n in others), default=0.0)
    out = []
    for n in bad:
        k = list(t.index).index(n)
        parts = [f"**Finding:** scaled alone by {FACTOR:g}, `{n}` (activation range {k + 1} of {len(t)}, in the "
                 "model's order) costs `best` "
                 f"{b.top1.mean() - t.loc[n, ('alone', 'no-sda')]:.1f} points ({b.top1.mean():.1f} -> "
                 f"{t.loc[n, ('alone', 'no-sda')]:.1f}); with every other range scaled and this one left as "
                 "calibrated, `best` keeps "
                 f"{t.loc[n, ('spared', 'no-sda')]:.1f} (every range scaled: {b.all_scaled.mean():.1f}). No other "
                 f"range alone costs it more than {worst_other:.1f} points. Its range is "
                 f"{t.loc[n, ('ratio', 'no-sda')]:.2f} of real data's."]
        s = sweep_table(rows, n)
        f = first_break(s.loc["no-sda"]) if "no-sda" in s.index else None
        if f is not None:
            parts.append(shape_text(s.loc["no-sda"], f))
            if recoveries(s.loc["no-sda"], f):
                parts.append(cliffs_text(s))
            else:
                parts += width_text(t, n, s, f)
        out.append(" ".join(parts))
    return out


def bundle_part(rows: list[dict], allow_mixed: bool = False) -> dict:
    """The dashboard's share (``docs/data/evidence.json.gz``, key ``jitter_grid``): top-1 of every set and seed
    with every range scaled by each factor of the dense grid, and this page's findings, computed here once."""
    check_versions(rows, allow_mixed=allow_mixed)
    if not any("dense" in r for r in rows):
        return {}
    grid = [dict(set=SETS[r["variant"]], seed=int(r["seed"]), factor=f, top1=round(v, 2)) for r in rows
            if "dense" in r for f, v in sorted([(1.0, r["top1"]), *zip(r["dense_factors"], r["dense"])])]
    t = layer_table(rows)
    return {"model": MODEL, "cell": f"W{CELL[0]}A{CELL[1]} {CELL[2]}", "goal_factors": [0.8, 1.0, 1.2],
            "grid": grid, "finding": [*dense_summary(rows), *finding(rows, t), *dense_finding(rows)],
            "rows": {"bench/rows/layer-jitter.jsonl": versions(rows)}, "renders": "docs/layer-jitter.md",
            "command": "python bench/layer_jitter.py --render-only --bundle"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--variants", default="no-sda,reference,real",
                    help=f"comma-separated, of {', '.join(VARIANTS)} (mct: run from the peers venv)")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--allow-mixed", action="store_true")
    ap.add_argument("--bundle", nargs="?", const=DOCS / "data" / "evidence.json.gz", type=Path,
                    help="also put the dense grid and the findings into this evidence bundle (default: the app's)")
    args = ap.parse_args()
    rows = Rows(rows_file("layer-jitter"), key)
    if not args.render_only:
        variants = args.variants.split(",")
        if unknown := set(variants) - set(VARIANTS):
            raise SystemExit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        run(range(args.seeds), variants, rows)
    write_doc("layer-jitter.md", render(rows.rows, args.allow_mixed))
    if args.bundle:
        patch_bundle(args.bundle, "jitter_grid", bundle_part(rows.rows, args.allow_mixed))


if __name__ == "__main__":
    main()
