"""Evidence: what the measurements over many seeds show, drawn from the committed bundle in a second.

Every takeaway sentence on this page is computed from the bundle's numbers (``lessons``), so a new
bundle that tells another story changes the words too; nothing here is written for one result.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dsg_core.experiments import goal
from dsg_core.models import get_spec
from dsg_core.sources import label

from .. import style, vega
from ..evidence_bundle import Bundle, gap, images_of, load

CELLS = (("W3A3", "minmax"), ("W4A4", "dsg-avg"), ("W4A4", "minmax"), ("W3A3", "dsg-avg"))
RECON_CELLS = (("W3A3", "adaround"), ("W2A4", "adaround"))  # on the More evidence page
# the small multiples' cells: the W3A3 cliff, the averaged ranges, and W2A4 with reconstruction, where
# one part of DSG (SDA) costs accuracy that the others do not (docs/pixel-range-sources.md)
VARIANT_CELLS = (("W3A3", "minmax"), ("W4A4", "dsg-avg"), ("W2A4", "adaround"))
RANGE_WORDS = {"free": "as generated (free pixels, the paper)", "clamp-after": "clamped to the valid range after "
               "generation", "clip": "kept in the valid range at every step (clip)"}
SOURCES = ("dsg", "zeroq", "gaussian", "real")
GOAL_CELLS = tuple((goal.width_name(w, a), q) for w, a, q in goal.GOAL_CELLS)  # issue 18's: ("W3A3", "minmax"), ...
GOAL_SETS = {"best": "Best", "real": "Real", "mct": "MCT"}
LEADER = {1: "DSG", -1: "ZeroQ"}  # who a lead (``lead``, ``jitter_lead``) names
PIXELS = {"free": "as generated", "clamp-after": "clamped after", "clip": "clipped"}  # in a sentence
POINTS = 2.0  # the smallest difference of top-1 worth naming (a measured effect also needs 2 s.e.)


# ------------------------------------------------------------------------------------------ lessons
def lead(gap_points: float, se: float) -> int:
    """Who is ahead at the calibrated ranges: +1 DSG, -1 ZeroQ, 0 neither (under POINTS or 2 s.e.)."""
    return int(math.copysign(1, gap_points)) if abs(gap_points) >= POINTS and abs(gap_points) >= 2 * se else 0


def jitter_lead(jit: float) -> int | None:
    """Who is ahead under range jitter (by at least POINTS), None where it was not measured."""
    return None if math.isnan(jit) else int(math.copysign(1, jit)) if abs(jit) >= POINTS else 0


def effect(cells: pd.DataFrame, model: str, bits: str, q: str, pr: str) -> dict | None:
    """DSG minus ZeroQ at one cell: the gap, its standard error, the range-jitter gap, and whether it
    is a measured effect (>= 2 points, >= 2 standard errors, same sign under range jitter)."""
    sel = cells[(cells.model == model) & (cells.bits == bits) & (cells.quantizer == q) & (cells.pixel_range == pr)]
    a, b = sel[sel.source == "dsg"].top1, sel[sel.source == "zeroq"].top1
    g = gap(cells, model, bits, q, pr)
    if g is None or len(a) < 2 or len(b) < 2:
        return None
    diff, jit, n = g
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    ok = lead(diff, se) != 0 and jitter_lead(jit) in (None, lead(diff, se))
    return {"gap": diff, "se": se, "jitter_gap": jit, "n": n, "effect": bool(ok)}


def effects(b: Bundle, model: str, cells: tuple = CELLS) -> pd.DataFrame:
    return b.memo(_effects, model, cells)


def _effects(b: Bundle, model: str, cells: tuple = CELLS) -> pd.DataFrame:
    return effects_of(b.cells, model, cells)


def effects_of(frame: pd.DataFrame, model: str, cells: tuple = CELLS) -> pd.DataFrame:
    """DSG minus ZeroQ at each of ``cells`` and pixel handling that ``frame`` (rows like ``Bundle.cells``) has."""
    rows = []
    for bits, q in cells:
        for pr in ("free", "clamp-after", "clip"):
            e = effect(frame, model, bits, q, pr)
            if e is not None:
                rows.append({"cell": f"{bits} {q}", "pixels": pr, **e})
    return pd.DataFrame(rows)


def signed(x: float) -> str:
    """One decimal with its sign, and no "-0.0" for a value that rounds to zero."""
    return f"{round(x, 1) + 0.0:+.1f}"


def verdict(e: dict) -> str:
    """In words, with the standard error of the difference (s.e.) and the range-jitter difference."""
    who = "DSG ahead" if e["gap"] > 0 else "ZeroQ ahead"
    if e["effect"]:
        jit = "not measured" if math.isnan(e["jitter_gap"]) else signed(e["jitter_gap"])
        return f"{who} by {abs(e['gap']):.1f} ± {e['se']:.1f} s.e. (range jitter {jit})"
    if lead(e["gap"], e["se"]):  # a clear gap that range jitter does not keep
        why = ("the other way round: no stable winner" if jitter_lead(e["jitter_gap"]) == -lead(e["gap"], e["se"])
               else "the grid's luck (the lead does not hold with the ranges moved)")
        return (f"{who} by {abs(e['gap']):.1f} ± {e['se']:.1f} s.e., but range jitter gives "
                f"{signed(e['jitter_gap'])}, {why}")
    # a sizeable mean gap that the seeds' spread cannot separate from zero is not "no difference"
    none = ("not separable from seed noise" if abs(e["gap"]) >= POINTS else
            f"a difference under {POINTS:g} points" if abs(e["gap"]) >= 2 * e["se"] > 0 else "no measured difference")
    said = f"{none} ({signed(e['gap'])} ± {e['se']:.1f} s.e.)"
    if abs(e["jitter_gap"]) >= 10:  # calibrated ranges agree, but the result hangs on the grid
        return f"{said}, but range jitter gives {signed(e['jitter_gap'])}: an unstable cell"
    return said if math.isnan(e["jitter_gap"]) else f"{said[:-1]}; range jitter {signed(e['jitter_gap'])})"


def lesson(eff: pd.DataFrame, model: str) -> str:
    """The page's headline, from the effects table: where DSG wins as generated, and what is left of
    each win when the pixels are kept in the valid range (clip) or clamped after generation — kept,
    gone, or reversed (ZeroQ ahead)."""
    if eff.empty:
        return f"The bundle has no DSG/ZeroQ cells for {model}."
    cells = eff.set_index(["cell", "pixels"])
    free = eff[eff.pixels == "free"]
    wins = free[free.effect & (free.gap > 0)]
    if not len(wins):
        return (f"On **{model}**, DSG does not beat ZeroQ at any of the {len(free)} cells measured, as generated or "
                "with the pixel range controlled.")
    behind = free[free.effect & (free.gap < 0)]
    parts = [f"On **{model}**, as generated (the paper's unbounded pixels), DSG beats ZeroQ at **{len(wins)} of "
             f"{len(free)}** cells" + (f" and ZeroQ beats DSG at {len(behind)} ({', '.join(behind.cell)})"
                                       if len(behind) else "") + f" (n = {int(free.n.min())} seeds each)."]
    shares, reversed_any = [], False
    for c, g, se in zip(wins.cell, wins.gap, wins.se):
        after = {pr: cells.loc[(c, pr)] for pr in ("clip", "clamp-after") if (c, pr) in cells.index}
        words = ", ".join(f"{signed(v['gap'])} ± {v['se']:.1f} with {pr}"
                          + ("" if v["effect"] or abs(v["gap"]) < POINTS else " (not kept under range jitter)")
                          for pr, v in after.items())
        kept = {pr: v["gap"] for pr, v in after.items() if v["effect"] and v["gap"] > 0}
        flipped = [pr for pr, v in after.items() if v["effect"] and v["gap"] < 0]
        if kept:
            pr, left = max(kept.items(), key=lambda kv: kv[1])
            shares.append(max(0.0, 1 - left / g))
            verdict = (f"**a smaller lead survives {pr}: {100 * shares[-1]:.0f}% of it was pixel range**"
                       + (" (of the leads left in range, the larger)" if len(after) > 1 else ""))
        else:
            shares.append(1.0)
            verdict = "**all of it was pixel range**"
        if flipped:
            verdict += f"; with {' and '.join(flipped)} **ZeroQ is ahead instead**"
            reversed_any = True
        parts.append(f"At {c}: {g:+.1f} ± {se:.1f} s.e. points as generated, {words} — {verdict}.")
    if all(x >= 0.5 for x in shares):
        parts.append("**Most of DSG's measured lead here came from pixels outside the valid input range, not from "
                     "diversity**" + ("; what is left depends on how the pixels are kept in range." if reversed_any
                                      else "; what survives is not pixel range." if any(x < 1 for x in shares) else
                                      ": keep pixels in range and ZeroQ's data calibrates as well."))
    else:
        parts.append("**Part of DSG's lead here is not pixel range: it survives with the pixels kept in range.**")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------ sections
def header(b: Bundle) -> None:
    m = b.meta
    st.markdown("What the measurements over many seeds show, before you run anything. Every chart below is drawn "
                "from a results bundle committed with the code; every sentence in bold is computed from its numbers.")
    made = "; ".join(f"`{c}`" for c in m.get("parts", [])) or f"`{m.get('command')}`"
    st.caption(f"Bundle made by {made}, then `{m.get('command')}`, from the rows of `{m.get('rows')}` "
               f"(`bench/reproduce.py --profile control`), at commit {str(m.get('commit'))[:10]}"
               f"{' (with uncommitted engine changes)' if m.get('dirty') else ''}, {m.get('created', '')[:10]}; "
               f"{m.get('samples')} images per set, {m.get('iterations')} generation steps, {m.get('seeds')} seeds per "
               f"cell, {seeds_per_multiple(m.get('variant_seeds'))}; top-1 on the 1,000-image MNIST test split.")


def seeds_per_multiple(seeds) -> str:
    """The bundle's seeds per small multiple: one number (older bundles) or one per family."""
    if isinstance(seeds, dict):
        names = {"components": "SDA / LSE / SCI", "epsilon": "ε"}
        return ", ".join(f"{n} per {names.get(f, f)} small multiple" for f, n in seeds.items() if n)
    return f"{seeds} per small multiple"


def samples_section(b: Bundle, model: str, pr: str, present: bool) -> None:
    st.subheader("1 · The samples")
    spec = get_spec(model)
    cols = st.columns(len(SOURCES))
    covered = {}
    for col, src in zip(cols, SOURCES):
        e = b.example(model, src, "free" if src == "real" else pr)
        if e is None:
            continue
        covered[src] = len(set(e["pred"]))
        with col:
            n = covered[src]
            st.markdown(f"**{label(src)}** · {n} class{'es' if n != 1 else ''} in {len(e['pred'])} images "
                        "(the first 8 shown)")
            names = spec.class_names
            st.image(list(images_of(e)[:8]), width=style.thumb(present),
                     caption=[f"{names[p]} {c:.0%}" for p, c in zip(e["pred"][:8], e["conf"][:8])])
    if covered:
        st.markdown(f"**What the grid shows** (seed 0, pixels {pr}): predicted classes among the first 16 images — "
                    + ", ".join(f"{label(s)} {n}" for s, n in covered.items())
                    + ". Synthetic images need not look like digits to calibrate well; what they carry is statistics.")


def homogenization_section(b: Bundle, model: str, pr: str) -> None:
    st.subheader("2 · Homogenization: per-sample statistics against the BN point")
    facts = b.models[model]
    n = len(facts["layers"])
    typical = b.memo(typical_layer, model, pr)
    layer = st.select_slider("BN layer", list(range(n)), typical, key="ev_layer", bind="query-params",
                             format_func=lambda i: f"{i}: {facts['layers'][i]}")
    scatter, spread_fig, syn = b.memo(homogenization_figures, model, pr, layer)
    here = layer_ratio(b, model, pr, layer)
    left, right = st.columns(2)
    left.vega_lite_chart(spec=scatter, key="ev_scatter", width="stretch")
    right.vega_lite_chart(spec=spread_fig, key="ev_spread", width="stretch")
    st.markdown("**What this shows:** the spread of per-sample BN means relative to real data, averaged over layers — "
                + ", ".join(f"{s} {v:.2f}" for s, v in syn.sort_values().items()) + " (1 = as varied as real). "
                + ("Every synthetic set is more alike than real data: homogenized. " if (syn < 1).all() else "")
                + (f"DSG spreads {syn['DSG'] / syn['ZeroQ']:.1f}× as much as ZeroQ. "
                   if {"DSG", "ZeroQ"} <= set(syn.index) else "")
                + (f"At the layer in the scatter ({facts['layers'][layer]}), DSG's per-sample means spread "
                   f"{here:.1f}× ZeroQ's" + (" — the layer whose ratio is the median over layers." if layer == typical
                                             else ".") + " " if here is not None else "")
                + "The ✕ is the BN running statistics; the dotted box is DSG's slack band (±δ, ±γ).")
    st.caption("Seed 0, channel 0 of the chosen layer. The spread chart is the same measure at every layer; the "
               "ratio differs from layer to layer, so one layer's scatter is an illustration, the average the "
               "measurement (metrics over all seeds are in docs/pixel-range.md).")


def layer_ratio(b: Bundle, model: str, pr: str, layer: int) -> float | None:
    """DSG's spread of per-sample BN means over ZeroQ's at one layer (seed 0), None without both sets."""
    d, z = (b.example(model, src, pr) for src in ("dsg", "zeroq"))
    if d is None or z is None or not z["spread_mean"][layer]:
        return None
    return float(d["spread_mean"][layer]) / float(z["spread_mean"][layer])


def typical_layer(b: Bundle, model: str, pr: str) -> int:
    """The layer shown first: the one whose DSG/ZeroQ spread ratio is the median over layers, so that the
    default scatter shows what the average says rather than the first layer's exception."""
    ratios = [(r, k) for k in range(len(b.models[model]["layers"])) if (r := layer_ratio(b, model, pr, k)) is not None]
    return sorted(ratios)[len(ratios) // 2][1] if ratios else 0


def homogenization_figures(b: Bundle, model: str, pr: str, layer: int) -> tuple:
    """The statistics scatter at one layer, the spread ratio per layer, and each synthetic set's spread
    of per-sample means averaged over layers."""
    facts = b.models[model]
    n = len(facts["layers"])
    examples = {src: e for src in SOURCES if (e := b.example(model, src, "free" if src == "real" else pr)) is not None}
    frames = pd.concat([pd.DataFrame({"set": label(src), "mean": e["mean"][layer], "std": e["std"][layer],
                                      "sample": range(len(e["mean"][layer]))}) for src, e in examples.items()])
    bn = (facts["bn_mu"][layer], facts["bn_sigma"][layer])
    band = (facts["delta"][layer], facts["gamma"][layer])
    spread = pd.concat([pd.DataFrame({"set": label(src), "layer": range(n), "layer_name": facts["layers"],
                                      "statistic": stat, "ratio": e[f"spread_{stat}"]})
                        for src, e in examples.items() for stat in ("mean", "std")])
    avg = spread[spread.statistic == "mean"].groupby("set").ratio.mean()
    return (vega.spec(vega.channel_scatter(frames, bn, band)), vega.spec(vega.layer_spread(spread)),
            avg.drop("Real", errors="ignore"))


def accuracy_section(b: Bundle, model: str) -> pd.DataFrame:
    st.subheader("3 · Accuracy at the cliff, every seed a dot")
    fp32 = b.models.get(model, {}).get("fp32_top1")
    eff = effects(b, model)
    panels = [p for p in ("free", "clamp-after", "clip") if p in set(b.cells[b.cells.model == model].pixel_range)]
    for bits, q in CELLS:
        fig = b.memo(cell_figure, model, bits, q, fp32)
        if fig is None:
            continue
        st.vega_lite_chart(spec=fig, key=f"ev_{bits}_{q}", width="stretch")
        notes = [f"**{pr}:** {verdict(r)}" for pr in panels for r in eff[(eff.cell == f"{bits} {q}")
                                                                         & (eff.pixels == pr)].to_dict("records")]
        st.markdown(f"DSG vs ZeroQ at {bits} {q} (n = {int(eff.n.min())} seeds each) — " + "; ".join(notes) + "."
                    + b.memo(noise_note, model, bits, q))
    st.caption("Dots: seeds. Bars: mean ± std, the tick at the mean. Hollow diamonds: the same seed with every "
               "activation range scaled by "
               "0.8, 1.0 and 1.2 and averaged — a result that moves a lot there is partly the grid's luck "
               "(docs/aliasing.md). Real images are always in range, so they appear in every panel. A difference "
               "is called measured when it is at least 2 points and 2 standard errors (s.e.) of the difference, and "
               "keeps its sign (by at least 2 points) under range jitter.")
    return eff


def noise_note(b: Bundle, model: str, bits: str, q: str) -> str:
    """Where Gaussian noise calibrates within 2 points of DSG (and, if so, whether real images do worse),
    say so: such a cell does not show that DSG's images are needed."""
    cells = b.cells[(b.cells.model == model) & (b.cells.bits == bits) & (b.cells.quantizer == q)]
    out = []
    for pr in ("free", "clip"):
        panel = vega.pixel_panels(cells, [pr]) if len(cells) else cells  # real in every panel; noise clip = clamped
        mean = {s: panel[panel.source == s].top1.mean() for s in ("dsg", "gaussian", "real")}
        if any(math.isnan(v) for v in mean.values()):
            continue
        if mean["gaussian"] >= mean["dsg"] - 2:
            out.append(f"with {pr} pixels Gaussian noise ({mean['gaussian']:.1f}) calibrates as well as DSG "
                       f"({mean['dsg']:.1f})" + (f" and better than real images ({mean['real']:.1f})"
                                                 if mean["real"] < mean["gaussian"] - 2 else ""))
    why_real = (" Real images can do worse than noise with min/max ranges: their activations reach further, so the "
                "low-bit grid is coarser (docs/results.md: narrowing real data's W3A3 ranges by 20% lifts its top-1 "
                "by several points).") if any("better than real" in o for o in out) and q == "minmax" else ""
    return (" **Note:** " + "; ".join(out) + " — unoptimized noise serves as well as DSG's images here, so this "
            "cell does not show that they are needed." + why_real) if out else ""


def cell_figure(b: Bundle, model: str, bits: str, q: str, fp32: float | None):
    """One cell's seeds, grouped by how the synthetic pixels were handled (free, clamped, clipped)."""
    cells = b.cells[b.cells.model == model].assign(set=lambda d: d.source.map(label))
    panels = [p for p in vega.PANEL_ORDER if p in set(cells.pixel_range)]
    sel = cells[(cells.bits == bits) & (cells.quantizer == q)]
    if sel.empty:
        return None
    title = f"{bits}, {q} ranges: top-1 by pixel handling"
    return vega.spec(vega.seed_dots(vega.pixel_panels(sel, panels), fp32, title, x="pixels", group="set"))


def control_table(eff: pd.DataFrame) -> None:
    st.subheader("4 · Diversity, or pixel range?")
    if eff.empty:
        return
    table = eff.assign(verdict=[verdict(r) for r in eff.to_dict("records")]).pivot(
        index="cell", columns="pixels", values="verdict")
    st.table(table[[c for c in ("free", "clamp-after", "clip") if c in table]])
    st.caption("DSG minus ZeroQ, mean ± standard error (s.e.) over seeds; the charts' bars are standard deviations. "
               "'Measured' means at least 2 points, at least 2 "
               "standard errors, and the same sign under range jitter. Generated images are unbounded; real inputs "
               "lie in a fixed range, and min/max calibration takes out-of-range pixels at face value.")


def small_multiples(b: Bundle, model: str, pr: str, present: bool) -> None:
    st.subheader("What each part of DSG changes (small multiples)")
    v = b.variants
    if v.empty:
        st.info("This bundle has no small multiples (bench/evidence.py --variant-seeds 0).")
        return
    v = v[(v.model == model) & (v.pixel_range == pr)]
    if v.empty:
        st.info(f"No small multiples for {model} with pixels {pr} in this bundle.")
        return
    family = st.segmented_control("Vary", ["epsilon", "components"], default="components", key="ev_family",
                                  bind="query-params", format_func={"epsilon": "slack quantile ε",
                                                                    "components": "SDA / LSE / SCI on or off"}.get)
    family = family or "components"
    fv = v[v.family == family]
    names = list(dict.fromkeys(fv.variant))
    st.caption("Seed 0's first images of each variant; under each image, the class the model predicts for it.")
    cols = st.columns(len(names))
    spec = get_spec(model)
    for col, name in zip(cols, names):
        e = b.example(model, "dsg", pr, variant=name)
        with col:
            st.markdown(f"**{name}**")
            if e is not None:
                st.image(list(images_of(e)[:4]), width=style.thumb(present) // 2 + 20,
                         caption=[spec.class_names[p] for p in e["pred"][:4]])
            spread = fv[fv.variant == name].stat_spread_ratio.dropna()
            if len(spread):
                st.caption(f"spread of BN means {spread.mean():.2f}× real")
    for bits, q in VARIANT_CELLS:
        fig = b.memo(variants_figure, model, pr, family, bits, q)
        if fig is not None:
            st.vega_lite_chart(spec=fig, key=f"ev_sm_{family}_{bits}_{q}", width="stretch")
    st.markdown("**What this shows:** " + multiples_takeaway(fv))


def variants_figure(b: Bundle, model: str, pr: str, family: str, bits: str, q: str):
    """The variants' top-1 at one cell, with ZeroQ's and real data's means as reference lines."""
    v = b.variants
    fv = v[(v.model == model) & (v.pixel_range == pr) & (v.family == family)]
    part = fv[(fv.bits == bits) & (fv.quantizer == q)].rename(columns={"variant": "set"})
    if part.empty:
        return None
    ref = b.cells[(b.cells.model == model) & (b.cells.pixel_range.isin([pr, "free"]))]
    lines = {}
    for src in ("zeroq", "real"):
        r = ref[(ref.source == src) & (ref.bits == bits) & (ref.quantizer == q)
                & (ref.pixel_range == ("free" if src == "real" else pr))].top1
        if len(r):
            lines[label(src)] = r.mean()
    return vega.spec(vega.seed_dots(part, b.models[model].get("fp32_top1"), f"{bits} {q}: DSG variants, pixels {pr}",
                                    lines=lines, height=320))


def multiples_takeaway(fv: pd.DataFrame) -> str:
    """Per cell: the variant with the highest mean, and how each other one compares: clearly below it
    (at least 2 points and 2 standard errors of the difference), close to it (under 2 points), or too
    spread over its seeds to rank (a gap of 2 points or more, but under 2 standard errors)."""
    out = []
    for (bits, q), cell in fv.groupby(["bits", "quantizer"]):
        m = cell.groupby("variant").top1.agg(["mean", "var", "count", "min", "max"])
        best = m["mean"].idxmax()
        below, close, spread = [], [], []
        for name, r in m.drop(index=best).iterrows():
            gap = m.at[best, "mean"] - r["mean"]
            se = math.sqrt(m.at[best, "var"] / m.at[best, "count"] + r["var"] / r["count"]) if r["count"] > 1 else 0.0
            if gap < POINTS:
                close.append(f"{name} {r['mean']:.1f}")
            elif gap >= 2 * se:
                below.append(f"{name} {r['mean']:.1f}")
            else:
                spread.append(f"{name} {r['mean']:.1f} (seeds {r['min']:.1f}-{r['max']:.1f})")
        words = f"at {bits} {q} **{best}** has the highest mean ({m.at[best, 'mean']:.1f})"
        words += f"; close to it: {', '.join(close)}" if close else ""
        words += f"; too spread over seeds to rank: {', '.join(spread)}" if spread else ""
        words += f"; clearly below it: {', '.join(below)}" if below else ""
        out.append(words + f" (n = {int(m['count'].min())} seeds each)" + sda_split(cell))
    return "; ".join(out) + "."


def sda_split(cell: pd.DataFrame) -> str:
    """For the components: the variants with SDA against those without it at one cell (means of the
    variants' means), the contrast the small multiples exist to show; empty for other families. A
    verdict needs the gap to reach ``POINTS`` and two standard errors of the seed-by-seed difference
    (each seed: its with-SDA variants' mean minus its without-SDA variants' mean)."""
    names = set(cell.variant)
    with_sda = [n for n in names if "SDA" in n]
    without = [n for n in names if "SDA" not in n]
    if not with_sda or not without:
        return ""
    means = cell.groupby("variant").top1.mean()
    a, b = means[with_sda].mean(), means[without].mean()
    se = _paired_se(cell, with_sda, without)
    gap = abs(a - b)
    if gap < POINTS:
        verdict = "no clear SDA effect"
    elif se is not None and gap < 2 * se:
        verdict = f"a gap of {gap:.1f} points, but under two standard errors ({se:.1f}) over seeds: not a clear effect"
    else:
        verdict = "SDA helps here" if a > b else "SDA costs accuracy here"
    return f" — with SDA {a:.1f}, without it {b:.1f}: {verdict}"


def _paired_se(cell: pd.DataFrame, with_sda: list[str], without: list[str]) -> float | None:
    """Standard error of the per-seed difference of the two groups' means; None without seeds to pair."""
    if "seed" not in cell:
        return None
    by_seed = cell.pivot_table(index="seed", columns="variant", values="top1")
    diff = (by_seed[with_sda].mean(axis=1) - by_seed[without].mean(axis=1)).dropna()
    return float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else None


def predicts_section(b: Bundle, model: str) -> None:
    """Does the homogenization measure predict accuracy? Spearman over the bundle's synthetic sets,
    all of them and those inside the valid range, never from fewer than 8 points."""
    words = b.memo(spread_correlations, model)
    if not words:
        return
    st.subheader("5 · Does diversity predict accuracy?")
    st.markdown(f"**Spread of per-sample BN statistics against W3A3 min/max top-1 on {model}** — " + "; ".join(words)
                + ". A measure that still predicted accuracy with the pixel range controlled would keep its "
                  "correlation in the second group, with and without range jitter. "
                + b.memo(spread_takeaway, model))


def spread_rhos(b: Bundle, model: str) -> list[tuple[str, int, float, float]]:
    """(group, n, Spearman of the spread against W3A3 min/max top-1 at the calibrated ranges, and
    against its range-jitter mean) for all synthetic sets and for those inside the valid range; NaN
    under 8 points; [] when the bundle lacks the data."""
    m, c = b.metrics, b.cells
    if m.empty or "stat_spread_ratio" not in m:
        return []
    cell = c[(c.model == model) & (c.bits == "W3A3") & (c.quantizer == "minmax") & (c.source != "real")]
    joined = cell.merge(m, on=["model", "source", "pixel_range", "seed"])
    if joined.empty:
        return []
    out = []
    for name, part in (("all synthetic sets", joined),
                       ("the sets inside the valid range", joined[joined.pixel_range != "free"])):
        n = len(part)
        rho = [part.stat_spread_ratio.corr(part[y], method="spearman") if n >= 8 else float("nan")
               for y in ("top1", "jitter_mean")]
        out.append((name, n, *rho))
    return out


def spread_correlations(b: Bundle, model: str) -> list[str]:
    """``spread_rhos`` in words."""
    return [f"{name}: Spearman {rho:+.2f} at the calibrated ranges, {jit:+.2f} with range jitter (n = {n})"
            if rho == rho else f"{name}: too few points (n = {n})" for name, n, rho, jit in spread_rhos(b, model)]


def spread_takeaway(b: Bundle, model: str) -> str:
    return spread_verdict(spread_rhos(b, model))


def spread_verdict(rhos: list[tuple[str, int, float, float]]) -> str:
    """What the in-range correlations support: the spread predicts accuracy with the range controlled
    only if it ranks both the calibrated result and its range-jitter mean (|rho| >= 0.5 each)."""
    inside = [r for r in rhos if r[0].startswith("the sets inside")]
    if not inside or inside[0][2] != inside[0][2]:
        return ""
    _, n, rho, jit = inside[0]
    if rho >= 0.5 and jit >= 0.5:
        return "**With the pixel range controlled, diversity still predicts accuracy here.**"
    if rho >= 0.5:
        return ("**Inside the valid range the spread ranks the result at the calibrated ranges but not the result "
                "with the ranges moved slightly: what it predicts there is partly the grid's luck, not accuracy "
                "that holds.**")
    return "**With the pixel range controlled, diversity does not predict accuracy here.**"


def nowhere_section(b: Bundle) -> None:
    st.subheader("6 · Where DSG does not help")
    notes = []
    for model in b.models:
        eff = effects(b, model)
        if eff.empty:
            continue
        none = eff[~eff.effect]
        losses = eff[eff.effect & (eff.gap < 0)]
        behind = f"; ZeroQ ahead at {', '.join(losses.cell + ' (' + losses.pixels + ')')}" if len(losses) else ""
        notes.append(f"**{model}:** no measured difference (or one that range jitter does not keep) at "
                     f"{len(none)} of {len(eff)} cell × pixel-range combinations{behind}.")
    st.markdown("\n".join(f"- {n}" for n in notes) or "No cells in the bundle.")
    if not b.goal.empty:
        st.markdown("**The recipe the app ships, the preset `best`** (DSG's reference objective without SDA, pixels "
                    "in range; More evidence has every seed): " + b.memo(goal_overall))
    st.caption("What reconstruction (AdaRound) changes is on the next page, More evidence; docs/results.md also "
               "records where reconstruction reverses the ranking at W2A4 (SDA is the part that costs it there: "
               "the small multiples show it), and that LSE and SCI add nothing measurable on these models.")


# ------------------------------------------------------------------------------------------ more steps
def steps_table(b: Bundle, model: str) -> pd.DataFrame:
    """Per page cell and pixel handling that ran at both step counts: the page's effect (the control, its steps)
    beside the one at the paper's generation steps (``b.steps``), columns suffixed ``_short`` and ``_long``;
    empty without both."""
    long = b.steps.get("cells", pd.DataFrame())
    if long.empty or model not in set(long.model):
        return pd.DataFrame()
    short, after = (e.set_index(["cell", "pixels"]) for e in (effects(b, model), effects_of(long, model)))
    return short.merge(after, left_index=True, right_index=True, suffixes=("_short", "_long")).reset_index()


def steps_lesson(b: Bundle, model: str) -> str:
    """Whether the page's measured verdicts hold at the paper's generation steps (for each pixel handling that
    ran at both), and which unmeasured cells move by more than POINTS, calibrated or under range jitter."""
    t = b.memo(steps_table, model)
    if t.empty:
        return ""
    held, lost, moved = [], [], []
    steps, short, n = b.steps.get("iterations"), b.meta.get("iterations"), int(t.n_long.min())
    for r in t.to_dict("records"):
        name = f"{r['cell']} {PIXELS[r['pixels']]}"
        jit = ("range jitter not measured there" if math.isnan(r["jitter_gap_long"])
               else f"range jitter {signed(r['jitter_gap_long'])}")
        span = b.memo(zeroq_span, model, r["cell"], r["pixels"])
        same = (lead(r["gap_long"], r["se_long"]) == lead(r["gap_short"], r["se_short"])
                and jitter_lead(r["jitter_gap_long"]) in (None, jitter_lead(r["jitter_gap_short"])))
        if r["effect_short"]:
            if same:
                held.append(f"{name} ({signed(r['gap_long'])} ± {r['se_long']:.1f}, {jit}{span})")
            else:
                lost.append(f"{name} ({signed(r['gap_long'])} ± {r['se_long']:.1f} calibrated; {why_lost(r, short)}"
                            f"{span})")
            continue
        moves = []
        if lead(r["gap_long"], r["se_long"]) != lead(r["gap_short"], r["se_short"]) \
                and abs(r["gap_long"] - r["gap_short"]) >= POINTS:
            moves.append(f"calibrated {r['gap_short']:+.1f} at {short} steps → {r['gap_long']:+.1f} at {steps}")
        a, z = jitter_lead(r["jitter_gap_short"]), jitter_lead(r["jitter_gap_long"])
        if a and z and a != z:
            calibrated = lead(r["gap_long"], r["se_long"])
            who = (f"no stable order: {LEADER[calibrated]} ahead at the calibrated ranges, {LEADER[z]} under range "
                   "jitter") if calibrated == -z else f"{LEADER[z]} ahead under range jitter"
            moves.append(f"under range jitter {r['jitter_gap_short']:+.1f} at {short} steps → "
                         f"{r['jitter_gap_long']:+.1f} at {steps} ({who})")
        if moves:
            moved.append(f"{name}: " + ", ".join(moves))
    ran = list(dict.fromkeys(t.pixels))
    absent = [PIXELS[p] for p in dict.fromkeys(b.cells[b.cells.model == model].pixel_range) if p not in ran]
    parts = [f"**With the paper's {steps} generation steps** ({model}, n = {n} seeds, DSG − ZeroQ, pixels "
             + " and ".join(PIXELS[p] for p in ran)
             + (f"; {' and '.join(absent)} did not run at {steps} steps" if absent else "") + "): "]
    said = ([("the measured verdicts above **hold** at " + "; ".join(held))] if held else []) + \
        ([("**no longer a measured verdict** at " + "; ".join(lost))] if lost else [])
    parts.append(", and ".join(said) or "no measured verdict above to check")
    if moved:
        parts.append(". **Cells without a measured verdict that move:** " + "; ".join(moved))
    return "".join(parts) + "."


def why_lost(r: dict, short: int) -> str:
    """Which part of a measured verdict fails at the paper's steps: the calibrated lead, or its range jitter
    (with two decimals: a value just under the bar must not print as the bar)."""
    before, after = lead(r["gap_short"], r["se_short"]), lead(r["gap_long"], r["se_long"])
    if after != before:
        return "the calibrated lead is gone" if not after else "the calibrated lead reverses"
    was = f"{r['jitter_gap_short']:+.2f} at {short} steps"
    if jitter_lead(r["jitter_gap_long"]) == 0:
        return f"under range jitter {r['jitter_gap_long']:+.2f} ({was}), below the {POINTS:g}-point bar"
    return f"range jitter reverses it ({r['jitter_gap_long']:+.2f}; {was})"


def zeroq_span(b: Bundle, model: str, cell: str, pixels: str) -> str:
    """"; ZeroQ's seeds span a-b" where they spread over more than 20 points at the paper's steps: a mean
    over a cell that is a coin toss per seed is not a typical run."""
    c = b.steps["cells"]
    bits, q = cell.split(" ")
    v = c[(c.model == model) & (c.source == "zeroq") & (c.bits == bits) & (c.quantizer == q)
          & (c.pixel_range == pixels)].top1
    return f"; ZeroQ's seeds span {v.min():.1f}-{v.max():.1f}" if len(v) and v.max() - v.min() > 20 else ""


def steps_section(b: Bundle, model: str) -> None:
    """Section 7: the page's verdicts at its step count against the paper's, and on the replayed model how
    top-1 moves along the steps (calibrated and under range jitter)."""
    t = b.memo(steps_table, model)
    if t.empty:
        return
    steps, short = b.steps["iterations"], b.meta.get("iterations")
    st.subheader(f"7 · Does it hold with the paper's {steps} steps? ({model})")
    rows = t.to_dict("records")
    table = pd.DataFrame({"cell": [f"{r['cell']}, {PIXELS[r['pixels']]}" for r in rows],
                          f"{short} steps (this page)": [verdict(_side(r, "short")) for r in rows],
                          f"{steps} steps": [long_verdict(r, short) for r in rows]})
    st.table(table.set_index("cell"))
    if model == b.steps.get("model"):
        st.markdown(b.memo(steps_replay, model)[1])
        st.caption(f"Every seed's top-1 along the {steps} steps is drawn on the next page, More evidence (two more "
                   "charts here would push this page past its 5-second budget: docs/dashboard-speed.md).")
    else:
        st.caption(f"The step-by-step replay (`bench/zeroq_steps.py`) ran on {b.steps.get('model')} only.")
    st.caption(f"DSG minus ZeroQ, mean ± standard error (s.e.) over seeds. {steps} steps: the control's cells on the "
               f"full profile's sets (`bench/reproduce.py --profile control-full`: 64 images each, the same seeds; "
               f"clamped after is the same set clamped; clip would need new sets and did not run); the replay: "
               f"`bench/zeroq_steps.py`, those sets with a snapshot every 50 steps (seeds 0-4; seeds 5-9 at steps "
               f"200, 400 and 500). Put into the bundle by `{b.steps.get('command')}` (docs/pixel-range-full.md, "
               "docs/zeroq-steps.md, docs/results.md). Three range factors are a coarse test: a denser grid can move "
               "such a verdict (docs/layer-jitter.md).")


def steps_charts_section(b: Bundle, model: str) -> None:
    """The replay of section 7 drawn: top-1 along the generation steps, each seed and the mean, per cell."""
    if not b.steps or model != b.steps.get("model"):
        return
    short, steps = b.meta.get("iterations"), b.steps["iterations"]
    st.subheader(f"Top-1 along the {steps} generation steps ({model})")
    st.markdown(f"Pixels as generated. Thick lines: the mean of the seeds with a snapshot every 50 steps; thin lines: "
                f"each of them. Range jitter: every activation range scaled by 0.8, 1.0 and 1.2, top-1 averaged. What "
                f"it shows at steps {short} and {steps}, over all seeds, is in the Evidence page's section 7.")
    figs, _ = b.memo(steps_replay, model)
    for col, (k, fig) in zip(st.columns(len(figs)), enumerate(figs)):
        col.vega_lite_chart(spec=fig, key=f"ev_steps_{k}", width="stretch")


def long_verdict(r: dict, short: int) -> str:
    """The verdict at the paper's steps; where range jitter was not measured there but took the cell's lead
    at the page's steps, say so (a calibrated lead there is untested, not a win)."""
    said = verdict(_side(r, "long"))
    c, j = lead(r["gap_short"], r["se_short"]), jitter_lead(r["jitter_gap_short"])
    if not math.isnan(r["jitter_gap_long"]) or r["effect_short"] or not c or j is None or j == c:
        return said
    return (f"{said}: untested, and at {short} steps range jitter {'reversed' if j == -c else 'removed'} this "
            f"cell's lead ({r['jitter_gap_short']:+.1f})")


def _side(r: dict, which: str) -> dict:
    return {k: r[f"{k}_{which}"] for k in ("gap", "se", "jitter_gap", "n", "effect")}


def steps_replay(b: Bundle, model: str) -> tuple[list[dict], str]:
    """The replay's charts, one per cell (the mean over the seeds with every snapshot, and each of them), and
    what it shows in words, computed from the seeds with a snapshot at the page's step count and at the last."""
    r = b.steps["replay"].assign(set=lambda d: d.source.map(label))
    dense = r[r.seed.isin(dense_seeds(r))]
    long = dense.melt(id_vars=["set", "seed", "step", "cell"], value_vars=["top1", "jitter_mean"],
                      var_name="ranges", value_name="value")
    long["ranges"] = long.ranges.map({"top1": "calibrated", "jitter_mean": "range jitter"})
    some = sorted(dense.seed.unique())
    short, steps = int(b.meta.get("iterations") or 200), int(b.steps["iterations"])
    figs = [vega.spec(vega.step_lines(g, f"{model}, {cell} (seeds {some[0]}-{some[-1]})"))
            for cell, g in long.groupby("cell")]  # the order of the words below
    return figs, steps_replay_takeaway(r, short, steps)


def steps_replay_takeaway(r: pd.DataFrame, short: int, steps: int) -> str:
    """Per replayed cell, each set's top-1 at ``short`` and ``steps`` steps (calibrated, under range jitter; the
    seeds' range where it is wide), DSG minus ZeroQ both ways at both step counts with the seeds where DSG is
    ahead, and the headline: whether the order under range jitter is the same at both step counts."""
    ends = r[r.step.isin([short, steps])].pivot_table(index=["cell", "seed", "step"], columns="source",
                                                      values=["top1", "jitter_mean"]).dropna()
    seeds = ends.index.get_level_values("seed").unique()
    words, flipped = [], []
    for cell, g in ends.groupby(level="cell"):
        at = {k: g.xs(k, level="step") for k in (short, steps)}
        sets = "; ".join(f"{label(src)} {_moved(at, 'top1', src)} calibrated{_seed_range(at[steps]['top1'][src])}, "
                         f"{_moved(at, 'jitter_mean', src)} under range jitter" for src in ("zeroq", "dsg"))
        gaps = {(k, v): at[k][v]["dsg"] - at[k][v]["zeroq"] for k in (short, steps) for v in ("top1", "jitter_mean")}
        order = "; ".join(f"{how} {_gap_words(gaps[(short, v)])} at {short} steps, {_gap_words(gaps[(steps, v)])} at "
                          f"{steps}" for v, how in (("top1", "calibrated"), ("jitter_mean", "under range jitter")))
        words.append(f"**{cell}**: {sets}. DSG − ZeroQ {order}.")
        before, after = (jitter_lead(gaps[(k, "jitter_mean")].mean()) for k in (short, steps))
        if before * (after or 0) < 0:
            calibrated = lead(gaps[(steps, "top1")].mean(), gaps[(steps, "top1")].sem())
            flipped.append((cell, f"{LEADER[calibrated]} is ahead at the calibrated ranges and {LEADER[after]} under "
                                  "range jitter" if calibrated * after < 0 else ""))
    start = r[(r.step == 0) & r.seed.isin(seeds)].groupby(["cell", "source"]).top1.mean()
    out = [f"**What the replay shows** ({len(seeds)} seeds, steps {short} and {steps} of one run of each set; the "
           f"table's {steps}-step sets and the page's {short}-step sets are other runs of the same configurations "
           "(another machine, an earlier session: a generated set is another draw on another machine), so their "
           "numbers differ, by several points where ZeroQ's seeds swing):", *words,
           "Step 0 is the starting noise (DSG's N(0,1) noise, ZeroQ's near-constant start as published): "
           + "; ".join(f"{cell}: " + ", ".join(f"{label(src)} {start[(cell, src)]:.1f}" for src in ("dsg", "zeroq"))
                       for cell in start.index.get_level_values("cell").unique())
           + " — unoptimized noise already calibrates some cells (compare Gaussian noise above)."]
    out.append(_still_moving(r, short, steps))
    px = r[r.step.isin([short, steps]) & r.seed.isin(seeds)].groupby(["source", "step"]).out_of_range.mean().mul(100)
    moved = max(abs(px[(src, steps)] - px[(src, short)]) for src in ("zeroq", "dsg"))
    out.append(("More steps do not push the pixels further outside the valid range" if moved < POINTS else
                "More steps move the share of pixels outside the valid range") + " (% of all pixels: " + "; ".join(
        f"{label(src)} {px[(src, short)]:.1f}% → {px[(src, steps)]:.1f}%" for src in ("zeroq", "dsg")) + ").")
    verdicts = []
    for cell, split in flipped:
        verdicts.append(f"**At {cell} the order under range jitter reverses between {short} and {steps} steps"
                        + (f"; at {steps} steps {split} — no stable order: the step count and the ranges pick the "
                           "winner.**" if split else ".**"))
    if not flipped:
        verdicts.append(f"**The order under range jitter is the same at {short} and {steps} steps at every replayed "
                        "cell.**")
    return out[0] + "".join(f"\n- {w}" for w in out[1:]) + "\n\n" + " ".join(verdicts)


def dense_seeds(r: pd.DataFrame) -> list[int]:
    """The replay's seeds with a snapshot at every step it took (seeds 0-4; the others only at a few)."""
    every = r.groupby("seed").step.nunique()
    return list(every[every == every.max()].index)


def _still_moving(r: pd.DataFrame, short: int, steps: int) -> str:
    """The largest move of one seed's calibrated top-1 between consecutive snapshots after ``short`` steps, per
    set, over the seeds with every snapshot (so each move spans one interval): a set still moving at the last
    step is read wherever the step count stops it."""
    after = r[(r.step >= short) & r.seed.isin(dense_seeds(r))].sort_values("step")
    by = after.groupby(["source", "cell", "seed"])
    jumps = after.assign(jump=by.top1.diff().abs(), before=by.top1.shift(), since=by.step.shift()).dropna(
        subset=["jump"])
    words = []
    for src in ("zeroq", "dsg"):
        j = jumps[jumps.source == src]
        if j.empty:
            continue
        top = j.loc[j.jump.idxmax()]
        words.append(f"{label(src)}'s by up to {top.jump:.1f} points (seed {int(top.seed)}, {top.cell}: "
                     f"{top.before:.1f} at step {int(top.since)}, {top.top1:.1f} at {int(top.step)})")
    return (f"From one snapshot to the next after step {short}, a seed's calibrated top-1 moves: " + "; ".join(words)
            + f": a set that still moves at step {steps} is read wherever the step count stops it.")


def _seed_range(v: pd.Series) -> str:
    """The seeds' range where it is wider than 20 points (a mean of such seeds is not a typical run)."""
    return f" (its seeds from {v.min():.1f} to {v.max():.1f} at the last step)" if v.max() - v.min() > 20 else ""


def _moved(at: dict, value: str, src: str) -> str:
    """One set's mean at the first step count → at the second."""
    first, last = at.values()
    return f"{first[value][src].mean():.1f} → {last[value][src].mean():.1f}"


def _gap_words(g: pd.Series) -> str:
    return f"{g.mean():+.1f} (DSG ahead on {int((g > 0).sum())} of {len(g)} seeds)"


def replay_section(b: Bundle, model: str, pr: str) -> None:
    snaps = [s for s in b.snapshots if s["model"] == model and s["pixel_range"] == pr]
    if not snaps:
        return
    st.subheader("Watch homogenization happen")
    layers = snaps[0]["layers"]
    facts = b.models[model]
    ratios = [layer_ratio(b, model, pr, layer) or 0.0 for layer in layers]
    typical = sorted(range(len(layers)), key=lambda i: ratios[i])[len(layers) // 2]  # as the scatter: the median
    k = st.radio("Layer", range(len(layers)), index=typical, horizontal=True, key="ev_replay_layer",
                 format_func=lambda i: f"{layers[i]}: {facts['layers'][layers[i]]}")
    fig, words = b.memo(replay_figure, model, pr, k)
    st.vega_lite_chart(spec=fig, key="ev_replay", width="stretch")
    st.markdown("**What the replay shows** (seed 0, channel 0 of this layer): " + words
                + f" Over all of this layer's channels, DSG's per-sample means end {ratios[k]:.1f}× as spread as "
                  "ZeroQ's; one channel can differ from its layer.")
    st.caption("Drag the slider under the chart. The ✕ is the BN running statistics, the dotted box DSG's slack band.")


def replay_figure(b: Bundle, model: str, pr: str, k: int) -> tuple:
    snaps = [s for s in b.snapshots if s["model"] == model and s["pixel_range"] == pr]
    layer = snaps[0]["layers"][k]
    facts = b.models[model]
    frames = pd.concat([pd.DataFrame({"iteration": s["iteration"], "set": label(s["source"]), "mean": s["mean"][k],
                                      "std": s["std"][k]}) for s in snaps], ignore_index=True)
    bn = (facts["bn_mu"][layer], facts["bn_sigma"][layer])
    fig = vega.spec(vega.replay(frames, bn, (facts["delta"][layer], facts["gamma"][layer])))
    return fig, replay_takeaway(frames, bn)


def replay_takeaway(frames: pd.DataFrame, bn: tuple[float, float]) -> str:
    """How far each set's per-sample means end from the BN mean, and how spread they end, against
    where they started (in units of the BN std of this channel)."""
    mu, sigma = bn
    first, last = frames.iteration.min(), frames.iteration.max()
    out = []
    for name, g in frames.groupby("set"):
        a, z = g[g.iteration == first], g[g.iteration == last]
        out.append(f"{name}: mean distance to the BN mean {abs(a['mean'] - mu).mean() / sigma:.2f}σ → "
                   f"{abs(z['mean'] - mu).mean() / sigma:.2f}σ, spread {a['mean'].std() / sigma:.2f}σ → "
                   f"{z['mean'].std() / sigma:.2f}σ")
    return "; ".join(out) + f" (iteration {first} → {last}). A set that ends near 0σ distance and spread has " \
        "collapsed onto the BN point (homogenized); one that keeps its spread has not."


def prebuild() -> None:
    """Derive the default view of every model once (``dashboard.serve`` calls it before the port opens,
    so the first visitor's page only draws)."""
    b = load()
    if b is None:
        return
    for model in b.models:
        fp32 = b.models[model].get("fp32_top1")
        b.memo(_effects, model, CELLS)
        b.memo(homogenization_figures, model, "free", b.memo(typical_layer, model, "free"))
        for bits, q in CELLS:
            b.memo(cell_figure, model, bits, q, fp32)
            b.memo(noise_note, model, bits, q)
        if not b.variants.empty:
            for bits, q in VARIANT_CELLS:
                b.memo(variants_figure, model, "free", "components", bits, q)
        b.memo(spread_correlations, model)
        b.memo(steps_lesson, model)
        if model == b.steps.get("model"):
            b.memo(steps_replay, model)
    for model in dict.fromkeys(b.goal.model if not b.goal.empty else []):
        b.memo(goal_figure, model)
        b.memo(goal_table, model)
        b.memo(goal_takeaway, model)
    if not b.goal.empty:
        b.memo(goal_overall)


def choose(b: Bundle) -> tuple[str, str]:
    """The model and the pixel handling shown (both in the link, shared by the two evidence pages)."""
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", list(b.models), key="ev_model", bind="query-params")
    pr = c2.segmented_control("Pixels of the synthetic sets in these pictures (the sidebar's Pixels set your runs)",
                              ["free", "clamp-after", "clip"],
                              default="free", key="ev_pixels", bind="query-params") or "free"
    return model, pr


def bundle() -> Bundle | None:
    b = load()
    if b is None:
        st.error("The evidence bundle docs/data/evidence.json.gz is missing: make it with `python bench/evidence.py` "
                 "(after `python bench/reproduce.py --profile control`).")
    return b


def render(present: bool = False, parts_page=None) -> None:
    """The story: samples, homogenization, accuracy at the cliff, the pixel-range control, what
    predicts accuracy, where DSG does not help. Each chart costs the browser about 0.3 s of CPU on these
    cores, so the small multiples and the replay have their own page (``render_parts``)."""
    b = bundle()
    if b is None:
        return
    header(b)
    model, pr = choose(b)
    models = list(b.models)
    eff = effects(b, model)
    others = [m for m in models if m != model]
    st.info("\n\n".join(filter(None, (lesson(eff, model), b.memo(steps_lesson, model),
                                       *(t for m in others for t in (lesson(effects(b, m), m),
                                                                     b.memo(steps_lesson, m)))))),
            icon=":material/lightbulb:")
    samples_section(b, model, pr, present)
    homogenization_section(b, model, pr)
    accuracy_section(b, model)
    control_table(eff)
    predicts_section(b, model)
    nowhere_section(b)
    steps_section(b, model)
    if parts_page is not None:
        st.page_link(parts_page, label="Next: more evidence — the shipped recipe (best) against real data and "
                     "MCT, what SDA, LSE, SCI and ε change (small multiples), "
                     "what reconstruction changes, homogenization replayed step by step, and top-1 along the 500 "
                     "generation steps seed by seed",
                     icon=":material/arrow_forward:")


def render_parts(present: bool = False) -> None:
    """The shipped recipe against real data and MCT, the small multiples (ε; SDA/LSE/SCI on or off),
    reconstruction and the replay, from the same bundle."""
    b = bundle()
    if b is None:
        return
    st.markdown("From the same results bundle as the Evidence page: the recipe the app ships (`best`) against real "
                "data and the strongest peer; what each part of DSG changes, over seeds; what reconstruction changes; "
                "how the per-sample statistics move while the images are optimized; and top-1 along the paper's 500 "
                "generation steps, seed by seed.")
    goal_section(b)
    model, pr = choose(b)
    small_multiples(b, model, pr, present)
    reconstruction_section(b, model)
    replay_section(b, model, pr)
    steps_charts_section(b, model)


def reconstruction_section(b: Bundle, model: str) -> None:
    """AdaRound at the cells of RECON_CELLS, seeds as dots by pixel handling, with the verdicts, and what
    it changes against min/max ranges at the same width."""
    cells = b.cells[b.cells.model == model]
    present = [(bits, q) for bits, q in RECON_CELLS if ((cells.bits == bits) & (cells.quantizer == q)).any()]
    st.subheader("What reconstruction changes (AdaRound)")
    if not present:
        st.info(f"This bundle has no reconstruction cells for {model} (bench/reproduce.py --profile control).")
        return
    eff = effects(b, model, RECON_CELLS)
    fp32 = b.models[model].get("fp32_top1")
    for bits, q in present:
        st.vega_lite_chart(spec=b.memo(cell_figure, model, bits, q, fp32), key=f"ev_{bits}_{q}", width="stretch")
        notes = [f"**{r['pixels']}:** {verdict(r)}" for r in eff[eff.cell == f"{bits} {q}"].to_dict("records")]
        st.markdown(f"DSG vs ZeroQ at {bits} {q} (n = {int(eff.n.min())} seeds each) — " + "; ".join(notes) + "."
                    + b.memo(noise_note, model, bits, q))
    st.markdown("**What this shows:** " + b.memo(reconstruction_takeaway, model))
    st.caption("AdaRound learns each layer's weight rounding from the calibration images (100 Adam steps per layer); "
               "activation ranges as in the other cells. Dots: seeds; bars: mean ± std; hollow diamonds: range "
               "jitter.")


def w2_words(gap_points: float) -> str:
    """Who leads at W2A4 with AdaRound, in words: the lead can be the other way round from W3A3's."""
    if abs(gap_points) < POINTS:
        return "neither leads by a difference worth naming"
    return "DSG is ahead" if gap_points > 0 else "ZeroQ is ahead"


def reconstruction_takeaway(b: Bundle, model: str) -> str:
    """Per pixel handling at W3A3: the DSG-minus-ZeroQ gap with min/max ranges against with AdaRound."""
    out = []
    for pr in ("free", "clip"):
        plain = gap(b.cells, model, "W3A3", "minmax", pr)
        recon = gap(b.cells, model, "W3A3", "adaround", pr)
        if plain is None or recon is None:
            continue
        change = ("reverses it" if plain[0] * recon[0] < 0 and abs(recon[0]) >= POINTS else
                  "removes it" if abs(recon[0]) < POINTS <= abs(plain[0]) else
                  "narrows it" if abs(recon[0]) <= abs(plain[0]) - POINTS else
                  "widens it" if abs(recon[0]) >= abs(plain[0]) + POINTS else "leaves it about the same")
        low = gap(b.cells, model, "W2A4", "adaround", pr)
        at_w2 = f" (at W2A4 with AdaRound {w2_words(low[0])}: {low[0]:+.1f})" if low is not None else ""
        out.append(f"with {pr} pixels DSG minus ZeroQ at W3A3 is {plain[0]:+.1f} points with min/max ranges and "
                   f"{recon[0]:+.1f} with AdaRound (n = {recon[2]}): reconstruction {change}{at_w2}")
    return "; ".join(out) + "." if out else "not measured for this model."


# ------------------------------------------------------------------------------- the shipped recipe
def goal_section(b: Bundle) -> None:
    """`best` (the preset the app ships) against real data and MCT at the goal cells, every seed a dot,
    with the goal's four tests per cell and what they add up to, per model (held-out ones marked)."""
    st.subheader("The shipped recipe: `best` against real data and MCT's generator")
    if b.goal.empty:
        st.info("This bundle has no rows of the `best` preset (bench/recipes.py, then bench/evidence.py).")
        return
    st.markdown("**" + b.memo(goal_overall) + "**")
    models = list(dict.fromkeys(b.goal.sort_values("held_out", kind="stable").model))
    held = set(b.goal[b.goal.held_out].model)
    model = st.radio("Model of this comparison", models, horizontal=True, key="ev_goal_model",
                     format_func=lambda m: f"{m} (held out)" if m in held else m)
    st.vega_lite_chart(spec=b.memo(goal_figure, model), key="ev_goal", width="stretch")
    st.table(b.memo(goal_table, model))
    st.markdown("**What this shows:** " + b.memo(goal_takeaway, model))
    st.caption(
        "Dots: seeds; bars: mean ± std; hollow diamonds: the seed's range-jitter mean (top-1 with every activation "
        "range scaled by 0.8, 1.0 and 1.2, averaged); black ticks: the pass line, real data's mean top-1 minus "
        f"{goal.WITHIN}. The axis starts where this model's lowest value allows, so it differs between models. "
        "Table: top-1 mean ± std over seeds (range-jitter mean). `best` = `--preset best`: DSG with the objective "
        "of DSG's released code, without SDA, pixels clamped to the valid range after generation (64 images, 200 "
        "steps; docs/best.md says how it was chosen). Real: 64 training images drawn by the same seed. MCT: Sony's "
        f"Model Compression Toolkit's generator with its defaults (docs/peers.md), run at {b.memo(peer_reach)}. "
        "AdaRound: 100 Adam steps per layer. The tests (issue 18's goal): top-1 and range-jitter mean within "
        f"{goal.WITHIN} points of real data's or above, std over seeds at most {goal.MAX_STD:g} point, and neither "
        "mean below MCT's. Held-out models played no part in choosing the recipe.")
    if b.jitter_grid.get("model") == model:
        jitter_grid_section(b)
    st.divider()  # the controls below choose the model of the sections after this one, not of this one


def jitter_grid_section(b: Bundle) -> None:
    """The goal's range jitter samples three factors; on a denser grid, where each set's cliff lies and what
    the measurements say about it (bench/layer_jitter.py computed the words; docs/layer-jitter.md)."""
    g = b.jitter_grid
    st.markdown(f"**A closer look at the range jitter, {g['cell']}:** every activation range scaled by one factor, "
                "on a denser grid than the goal's three.")
    st.vega_lite_chart(spec=b.memo(jitter_grid_figure), key="ev_jitter_grid", width="stretch")
    for line in g["finding"]:
        st.markdown(line)
    st.caption(b.memo(jitter_grid_caption))


def jitter_grid_caption(b: Bundle) -> str:
    g = b.jitter_grid
    seeds = pd.DataFrame(g["grid"]).groupby("set").seed.nunique()
    return ("Lines: top-1 mean over seeds; dots: seeds (" + ", ".join(f"{s} {n}" for s, n in seeds.items()) + "); "
            f"grey dashes: the factors the goal's jitter mean averages "
            f"({', '.join(f'{f:g}' for f in g['goal_factors'])}). AdaRound fitted the weights at each set's "
            "calibrated ranges; the ranges are then scaled, the weights kept. Reference (SDA): the recipe before "
            "`best` (with SDA). Measured by `python bench/layer_jitter.py` (docs/layer-jitter.md has every range "
            "alone, and every range but one).")


def jitter_grid_figure(b: Bundle) -> dict:
    g = b.jitter_grid
    df = pd.DataFrame(g["grid"])
    return vega.spec(vega.factor_lines(df, f"{g['model']}, {g['cell']}: top-1 as every range is scaled",
                                       list(g["goal_factors"])))


def peer_reach(b: Bundle) -> str:
    """Where MCT's generator ran, in words (its cells, and the models it did not run on)."""
    mct = b.goal[b.goal["set"] == "mct"]
    cells = list(dict.fromkeys(mct.bits + " " + mct.quantizer))
    missing = [m for m in dict.fromkeys(b.goal.model) if m not in set(mct.model)]
    return (f"{len(cells)} of the {len(GOAL_CELLS)} cells ({', '.join(cells)})"
            + (f", not on {', '.join(missing)}" if missing else ""))


def goal_cells(b: Bundle, model: str) -> pd.DataFrame:
    """The model's goal rows in cell order, with the chart's names (cell, set)."""
    g = b.goal[b.goal.model == model]
    order = {c: k for k, c in enumerate(GOAL_CELLS)}
    g = g.assign(cell=g.bits + " " + g.quantizer, set=g["set"].map(GOAL_SETS),
                 order=[order.get(c, len(order)) for c in zip(g.bits, g.quantizer)])
    return g.sort_values(["order", "seed"], kind="stable")


def goal_figure(b: Bundle, model: str) -> dict:
    """The seeds of `best`, real data and MCT per goal cell, with the top-1 pass line (real data's mean
    minus WITHIN) as a black tick across each cell."""
    fp32 = b.models.get(model, {}).get("fp32_top1") or b.meta.get("goal", {}).get("fp32_top1", {}).get(model)
    title = f"{model}: top-1 at the goal cells, every seed a dot"
    cells = goal_cells(b, model)
    low = min(cells.top1.min(), cells.jitter_mean.min())
    real = cells[cells["set"] == "Real"].groupby("cell", sort=False).top1.mean()
    line = vega.level_ticks(real - goal.WITHIN, "cell", list(dict.fromkeys(cells.cell)),
                            f"pass line: real − {goal.WITHIN}")
    return vega.spec(vega.seed_dots(cells, fp32, title, x="cell", group="set", floor=max(0, 10 * math.floor(low / 10)),
                                    marks=(line,)))


def goal_tests(b: Bundle, model: str) -> list[dict]:
    """Per goal cell measured for ``model``: the goal's tests (``goal.cell_tests``) and each set's rows."""
    g = goal_cells(b, model)
    out = []
    for bits, q in GOAL_CELLS:
        at = g[(g.bits == bits) & (g.quantizer == q)]
        best, real, peer = (at[at["set"] == GOAL_SETS[s]] for s in ("best", "real", "mct"))
        if best.empty:
            continue
        out.append({"cell": f"{bits} {q}", "best_rows": best, "real_rows": real, "peer_rows": peer,
                    **goal.cell_tests(best, real, peer)})
    return out


def goal_table(b: Bundle, model: str) -> pd.DataFrame:
    def stat(rows: pd.DataFrame) -> str:
        if rows.empty:
            return "–"
        return f"{rows.top1.mean():.1f} ± {goal.std_text(rows.top1.std(ddof=0))} ({rows.jitter_mean.mean():.1f})"

    def mark(ok: bool | None) -> str:
        return "not run" if ok is None else ("yes" if ok else "no")

    def peer(t: dict) -> str:
        g = t["peer_gap"]
        return mark(t["peer"]) if t["peer"] is not False else f"no ({g.gap:+.2f}{', under 2 s.e.' * g.tie})"

    return pd.DataFrame([{"cell": t["cell"], "Best: top-1 ± std (jitter mean)": stat(t["best_rows"]),
                          "Real": stat(t["real_rows"]), "MCT": stat(t["peer_rows"]),
                          f"top-1 ≥ real − {goal.WITHIN}": mark(t["top1"]), f"std ≤ {goal.MAX_STD:g}": mark(t["std"]),
                          f"jitter mean ≥ real's − {goal.WITHIN}": mark(t["jitter"]),
                          "≥ MCT": peer(t), "all tests": "met" if goal.met(t) else "missed"}
                         for t in b.memo(goal_tests, model)]).set_index("cell")


def misses(t: dict) -> list[str]:
    """The failed tests of one cell in words, with the numbers behind each."""
    best, real, out = t["best_rows"], t["real_rows"], []
    if t["top1"] is False:
        out.append(f"top-1 {best.top1.mean():.1f} against real data's {real.top1.mean():.1f}")
    if t["std"] is False:
        own = real.top1.std(ddof=0) if len(real) else float("nan")
        out.append(f"std {goal.std_text(best.top1.std(ddof=0))} over {len(best)} seeds"
                   + (f", real data's own {own:.1f}" if own > goal.MAX_STD else ""))
    if t["jitter"] is False:
        out.append(f"jitter mean {best.jitter_mean.mean():.1f} against real data's {real.jitter_mean.mean():.1f}")
    if t["peer"] is False:
        g = t["peer_gap"]
        words = " — under two standard errors, a tie in the noise" if g.tie else ""
        out.append(f"{g.name} below MCT's by {-g.gap:.2f} ± {g.se:.2f} s.e.{words}")
    return out


def goal_takeaway(b: Bundle, model: str) -> str:
    tests = b.memo(goal_tests, model)
    met = [t["cell"] for t in tests if goal.met(t)]
    missed = [f"{t['cell']} ({'; '.join(misses(t))})" for t in tests if not goal.met(t)]
    head = f"`best` meets every test at {len(met)} of {len(tests)} cells on {model}"
    return head + (". It misses " + "; ".join(missed) + "." if missed else ".")


def goal_overall(b: Bundle) -> str:
    """Over every model of the bundle: cells met, cells at least MCT's where MCT ran, and where real data's
    own seeds spread beyond the std test."""
    per = {m: b.memo(goal_tests, m) for m in dict.fromkeys(b.goal.model)}
    tests = [t for ts in per.values() for t in ts]
    peer = [t for t in tests if t["peer"] is not None]
    met, met_peer, ahead = (sum(goal.met(t) for t in tests), sum(goal.met(t) for t in peer),
                            sum(t["peer"] for t in peer))
    ties = sum(1 for t in peer if t["peer"] is False and t["peer_gap"].tie)
    wide = [t["cell"] for t in tests if len(t["real_rows"]) and t["real_rows"].top1.std(ddof=0) > goal.MAX_STD]
    wide_n = {c: wide.count(c) for c in (" ".join(c) for c in GOAL_CELLS) if c in wide}
    return (f"Over {len(per)} models, `best` meets every test of the goal at {met} of {len(tests)} cells: "
            f"{met_peer} of the {len(peer)} where MCT ran (all four tests) and {met - met_peer} of the "
            f"{len(tests) - len(peer)} where it did not (three tests). It is at least MCT's at {ahead} of those "
            f"{len(peer)} cells ({ties} of the other {len(peer) - ahead} within two standard errors)."
            + (" Real data's own top-1 spreads beyond the std test at " + ", ".join(
                f"{c} on {n} of {len(per)} models" for c, n in wide_n.items()) + "." if wide else ""))
