"""Accuracy of a run: every seed a dot, mean ± std, range jitter, against the evidence bundle's seeds;
the small multiples (ε, SDA/LSE/SCI) live; and whether a diversity metric predicts accuracy."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dsg_core.diagnostics import REAL
from dsg_core.provenance import FIELDS

from .. import charts, evidence_bundle, vega
from ..runner import ablation_frame, ablation_job
from ..text import code
from . import intro, tradeoff

CAPTION = ("Quantized top-1 of the run on screen. Every seed is a dot; the grey box behind is the evidence bundle's "
           "seeds at the same cell and pixel range, so a lucky or unlucky run shows as such.")


def fp32_of(results: pd.DataFrame) -> float | None:
    return float(results["fp32_top1"].iloc[0]) if len(results) else None


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Set x bit-width table of mean top-1, with ± std over seeds when several seeds ran."""
    g = results.groupby(["set", "bits"])["top1"]
    stats = g.agg(["mean", "count"]).reset_index()
    stats["std"] = g.std(ddof=0).values
    stats["top1"] = [f"{m:.1f}" + (f" ± {s:.1f}" if n > 1 else "") + f" (n={n})" for m, s, n in
                     zip(stats["mean"], stats["std"], stats["count"])]
    order = sorted(results["bits"].unique(), key=charts.bits_key, reverse=True)
    return stats.pivot(index="set", columns="bits", values="top1")[order]


def takeaway(cell: pd.DataFrame) -> str:
    """What one cell of the run supports, with its n: the ordering of the means and whether the seeds
    overlap (a separation that range jitter erases is called luck)."""
    g = cell.groupby("set").agg(mean=("top1", "mean"), lo=("top1", "min"), hi=("top1", "max"), n=("top1", "size"))
    if "jitter_mean" in cell:
        g["jitter"] = cell.groupby("set")["jitter_mean"].mean()
    ranked = g.sort_values("mean", ascending=False)
    words = ", ".join(f"{s} {r['mean']:.1f}" for s, r in ranked.iterrows())
    n = int(g["n"].min())
    out = f"Means over {n} seed{'s' if n > 1 else ''}: {words}."
    if {"DSG", "ZeroQ"} <= set(g.index):
        d, z = g.loc["DSG"], g.loc["ZeroQ"]
        separated = d["lo"] > z["hi"] or z["lo"] > d["hi"]
        if n < 3:
            out += " Too few seeds to call a difference."
        elif separated:
            lead = "DSG" if d["mean"] > z["mean"] else "ZeroQ"
            jitter_gap = g.loc["DSG", "jitter"] - g.loc["ZeroQ", "jitter"] if "jitter" in g else None
            holds = jitter_gap is None or jitter_gap * (d["mean"] - z["mean"]) > 0
            out += (f" {lead}'s seeds all lie above the other's" + (", and the order holds under range jitter."
                                                                   if holds else ", but range jitter reverses it: "
                                                                   "the grid's luck, not the data."))
        else:
            out += " DSG's and ZeroQ's seeds overlap: no difference this run can show."
    return out


def range_note(plan, bits: str, quantizer: str, b: evidence_bundle.Bundle | None = None) -> str:
    """What the bundle says of DSG's lead at this cell once the pixel range is controlled, so that a
    live run with free pixels is not read as diversity's doing when the bundle shows it is range."""
    b = b or evidence_bundle.load()
    if b is None:
        return ""
    gaps = {pr: evidence_bundle.gap(b.cells, plan.model, bits, quantizer, pr) for pr in ("free", "clip")}
    if None in gaps.values():
        return ""
    (free, _, n), (clip, clip_jitter, _) = gaps["free"], gaps["clip"]
    here = plan.generation.pixel_range
    words = (f"Over the evidence bundle's {n} seeds at {bits} {quantizer}, DSG minus ZeroQ is {free:+.1f} points with "
             f"free pixels and {clip:+.1f} with the pixels clipped to the valid range every step (range jitter "
             f"{clip_jitter:+.1f}).")
    if here == "free" and free > 2 and clip < free / 2:
        words += (" Most of a free-pixel lead is pixels outside the valid input range, not diversity: set "
                  "**Pixels** to `clip` in the sidebar to see the part that survives (Evidence page, section 4).")
    return words


def outside_bundle(cell: pd.DataFrame, ref: pd.DataFrame | None) -> str:
    """The sets whose mean over this run's seeds lies outside every one of the bundle's seeds, said
    plainly: a run that disagrees with the many-seed evidence should not be read as a new finding."""
    if ref is None or ref.empty:
        return ""
    # rounded as shown: a mean that reads as the top seed's value is not "above all" of them
    run, seeds = cell.groupby("set").top1.mean().round(1), ref.groupby("set").top1.agg(["min", "max", "size"]).round(1)
    out = [f"{s} {m:.1f} ({'below' if m < seeds.at[s, 'min'] else 'above'} all {seeds.at[s, 'size']} bundle seeds, "
           f"{seeds.at[s, 'min']:.1f}-{seeds.at[s, 'max']:.1f})"
           for s, m in run.items() if s in seeds.index and not seeds.at[s, "min"] <= m <= seeds.at[s, "max"]]
    return ("This run's mean lies outside the bundle's seeds for " + "; ".join(out) + ". Read it with the run's "
            "settings in mind (images, steps, pixels: the note below), not as a new finding.") if out else ""


def reference_cells(plan, bits: str, quantizer: str) -> tuple[pd.DataFrame | None, str]:
    """The bundle's seeds at the run's model, pixel range and cell, and a note on how it was made."""
    b = evidence_bundle.load()
    if b is None or b.cells.empty:
        return None, ""
    cell = b.cells[(b.cells.model == plan.model) & (b.cells.bits == bits) & (b.cells.quantizer == quantizer)]
    sel = vega.pixel_panels(cell, [plan.generation.pixel_range]) if len(cell) else cell  # noise: clip = clamp-after
    if sel.empty:
        return None, ""
    from dsg_core.sources import label
    ref = sel.assign(set=sel.source.map(label))
    same = (b.meta.get("samples"), b.meta.get("iterations")) == (plan.generation.samples, plan.generation.iterations)
    note = (f"Grey boxes: the bundle's {ref.seed.nunique()} seeds ({b.meta.get('samples')} images, "
            f"{b.meta.get('iterations')} steps{'' if same else ' — not the settings of this run'}).")
    return ref, note


def render(result, ctx, store, running: bool, start) -> None:
    if not intro(CAPTION, result):
        return
    res = result.results
    fp32 = fp32_of(res)
    for (bits, q), cell in res.groupby(["bits", "quantizer"], sort=False):
        ref, note = reference_cells(result.plan, bits, q)
        st.altair_chart(vega.seed_dots(cell, fp32, f"{bits}, {q} ranges", reference=ref,
                                       test_images=result.plan.eval_images), key=f"cell_{bits}_{q}", width="stretch")
        st.markdown(f"**What this run shows at {bits} {q}:** {takeaway(cell)}")
        differs = outside_bundle(cell, ref)
        if differs:
            st.warning(differs, icon=":material/difference:")
        pixels = range_note(result.plan, bits, q)
        if pixels:
            st.info(pixels, icon=":material/crop_free:")
        if note:
            st.caption(note)
    if res["bits"].nunique() > 1:
        st.plotly_chart(charts.accuracy(res, fp32), key="accuracy")
    st.dataframe(summary(res), key="accuracy_table", height="content")
    with st.expander("Every result row"):
        shown = res.drop(columns=[c for c in (*FIELDS, "range_jitter") if c in res])  # jitter: its mean is shown
        st.dataframe(shown, hide_index=True, column_config={"seconds": st.column_config.NumberColumn(
            "seconds", help="quantize and evaluate, this row", format="%.1f")})
        if "code_version" in res:
            st.caption("Computed by code version " + ", ".join(code(v) for v in res.code_version.unique()) + ".")
    st.divider()
    multiples(result, ctx, running, start)
    st.divider()
    tradeoff.render(result, store)


def multiples(result, ctx, running: bool, start) -> None:
    """Small multiples of the run's plan: DSG at several ε, or with each component set."""
    st.subheader("Small multiples: ε, and SDA / LSE / SCI on or off")
    plan = result.plan
    st.caption(f"Each variant is DSG generated with this run's settings ({plan.generation.samples} samples, "
               f"{plan.generation.iterations} steps, {len(plan.seeds)} seed(s), pixels {plan.generation.pixel_range}) "
               "and quantized at its lowest bit-width; ZeroQ and real data run beside them as references. The "
               "Evidence page has the same with more seeds, instantly.")
    same_model = ctx is not None and ctx.spec.name == plan.model
    c1, c2 = st.columns(2)
    for col, kind, text in ((c1, "epsilon", "Compute the ε small multiples"),
                            (c2, "components", "Compute the component small multiples")):
        if col.button(text, key=f"multiples_{kind}", disabled=running or not same_model):
            start(ablation_job(plan, ctx, kind))
            st.rerun()
    for kind in ("ablation-epsilon", "ablation-components"):
        done = st.session_state.get(kind)
        if done:
            draw_multiples(done, kind)


def draw_multiples(results: dict, kind: str) -> None:
    df = ablation_frame(results)
    dsg = df[df.source == "dsg"].assign(set=df.variant)
    refs = df[df.source.isin(["zeroq", "real"])]
    fp32 = fp32_of(df)
    for (bits, q), cell in dsg.groupby(["bits", "quantizer"]):
        lines = {name: r.mean() for name in ("ZeroQ", REAL)
                 if len(r := refs[(refs.set == name) & (refs.bits == bits) & (refs.quantizer == q)].top1)}
        st.altair_chart(vega.seed_dots(cell, fp32, f"{bits} {q}: DSG variants ({kind.split('-')[1]})", lines=lines,
                                       height=340), key=f"{kind}_{bits}_{q}", width="stretch")
        means = cell.groupby("set").top1.agg(["mean", "std", "count"])
        span, noise = means["mean"].max() - means["mean"].min(), means["std"].fillna(0).max()
        st.markdown(f"**What this shows:** the variants' means span {span:.1f} points; the seeds of one variant "
                    f"spread by up to {noise:.1f} (std, n={int(means['count'].min())}). "
                    + ("The differences are larger than the seed noise." if span > 2 * noise and span >= 2 else
                       "No variant stands out from the seed noise."))
    if "stat_spread_ratio" in dsg:
        spread = dsg.groupby("set").stat_spread_ratio.mean().dropna()
        if len(spread):
            st.caption("Spread of per-sample BN means (× real): "
                       + ", ".join(f"{k} {v:.2f}" for k, v in spread.items()) + ".")
