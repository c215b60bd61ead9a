"""Explore a run: its samples, the homogenization pictures (with a replay), the embedding and the
diversity metrics — each with a caption computed from the data on screen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from dsg_core.diagnostics import REAL, embedding_frame, similarity_spectrum
from dsg_core.diagnostics import views as dv
from dsg_core.diagnostics.convergence import convergence
from dsg_core.diagnostics.metrics import class_entropy
from dsg_core.models import get_spec
from dsg_core.sources import label

from .. import charts, style, vega
from . import intro
from .evidence import replay_takeaway
from .metric_names import metric_table

CAPTION = ("One run, seen four ways. Pictures show the run's first seed; tables average its seeds. Every sentence "
           "in bold is computed from the data on screen; the Evidence page has what the measurements over many seeds "
           "say.")


def to_pixels(images: torch.Tensor, mean, std) -> np.ndarray:
    """Model-input space -> (N, H, W[, 3]) floats in [0, 1] for st.image."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (images.cpu() * s + m).clamp(0, 1)
    return (x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)).numpy()


def render(result, present: bool = False) -> None:
    if not intro(CAPTION, result):
        return
    spec = get_spec(result.plan.model)
    views = {"Samples": lambda: samples(result, spec, present), "Homogenization": lambda: homogenization(result),
             "Embedding": lambda: embedding(result, spec, present), "Diversity metrics": lambda: metrics(result)}
    # Bound to the URL, the tabs rerun the script on a switch and say which one is open: only that one
    # is drawn, so a switch or a plot selector costs one view, not four.
    for tab, draw in zip(st.tabs(list(views), key="tab", bind="query-params"), views.values()):
        if tab.open:
            with tab:
                draw()


# ---------------------------------------------------------------------------------------- samples
def samples(result, spec, present: bool) -> None:
    sets = result.first_seed_sets()
    diag = result.diagnosis
    c1, c2 = st.columns(2)
    by_class = c1.toggle("Group by predicted class", True, key="by_class", bind="query-params")
    most = max(2, min(64, max(len(v) for v in sets.values())))  # a set of 10 images shows at most 10
    limit = c2.slider("Images shown per set", 1, most, min(12, most), 1, key=f"show_n_{most}")
    facts = {name: (round(cover * spec.num_classes), entropy)  # (classes predicted, their evenness)
             for name in sets for entropy, cover in [class_entropy(diag.probes[name])]}
    st.markdown(samples_takeaway(facts, spec.num_classes))
    cols = st.columns(len(sets))
    for col, (name, images) in zip(cols, sets.items()):
        probs = diag.probes[name].probs
        conf, pred = probs.max(1)
        order = (torch.argsort(pred * 2 - conf, stable=True) if by_class else torch.arange(len(pred)))[:limit]
        captions = [f"{spec.class_names[int(pred[i])][:10]} · {conf[i]:.0%}" for i in order]
        with col:
            n, h = facts[name]
            st.markdown(f"**{name}** · {n} of {spec.num_classes} classes")
            st.image(list(to_pixels(images[order], spec.mean, spec.std)), caption=captions,
                     width=style.thumb(present), clamp=True)
    st.caption("Each caption: the class the FP32 model predicts and its confidence. Click an image to enlarge it.")
    lo, hi = spec.valid_range
    values = {name: x[:, 0].flatten().numpy() for name, x in sets.items()}
    st.plotly_chart(charts.pixel_histogram(values, (lo[0], hi[0])), key="pixels")
    tol = 1e-5  # a 0 or 1 pixel, normalized in float32, lands an ulp past the bound: inside
    outside = {name: float(((x < lo[0] - tol) | (x > hi[0] + tol)).mean()) for name, x in values.items()}
    st.caption("Share of pixels outside the valid range: " + ", ".join(f"{n} {v:.0%}" for n, v in outside.items())
               + ". Min/max calibration sees those pixels as real inputs; docs/pixel-range.md measures what that "
                 "does to accuracy.")
    curves = {(label(src), seed): [h["loss"] for h in s.history] for (src, seed), s in result.sets.items()
              if s is not None and s.history}
    if curves:
        st.plotly_chart(charts.loss_panels(curves), key="losses")
        st.markdown(convergence_takeaway(curves))


def convergence_takeaway(curves: dict[tuple[str, int], list[float]]) -> str:
    """Per objective, whether its seeds' curves converged (``dsg_core.diagnostics.convergence``), so the
    loss chart is never captioned "converged" for a run that was stopped while still falling."""
    parts = []
    for src in dict.fromkeys(s for s, _ in curves):
        conv = {seed: convergence(v) for (s, seed), v in curves.items() if s == src and v}
        if not conv:
            continue
        falling = [seed for seed, c in conv.items() if not c.converged]
        levelled = [c.plateau for c in conv.values() if c.levelled]
        n = max(c.iterations for c in conv.values())
        if falling:
            parts.append(f"**{src} was still falling when it stopped** (seed{'s' if len(falling) > 1 else ''} "
                         f"{', '.join(map(str, falling))}): more iterations would move these sets further")
            continue
        words = []
        if levelled:
            words.append(f"levelled off by iteration {min(levelled)}"
                         + (f"-{max(levelled)}" if max(levelled) > min(levelled) else "") + f" of {n}"
                         + ("" if len(levelled) == len(conv) else f" on {len(levelled)} of {len(conv)} seeds"))
        if len(levelled) < len(conv):
            worst = max(c.reduction for c in conv.values() if not c.levelled)
            words.append(f"fell to {worst:.0e} of its start or less" + ("" if not levelled else " on the others")
                         + " (a hinge decays towards 0 rather than levelling off)")
        parts.append(f"{src} " + "; ".join(words))
    return ("**Converged?** " + "; ".join(parts) + ". Levelled off: never again 5% lower.") if parts else ""


def samples_takeaway(facts: dict[str, tuple[int, float]], k: int) -> str:
    """What the grid supports: how many classes each set's predictions cover, and which synthetic set
    spreads them most and least evenly (normalized entropy of the predicted-class histogram), saying
    so when the most even set is not the one that covers the most classes."""
    synthetic = {n: f for n, f in facts.items() if n != REAL}
    if not synthetic:
        return ""
    top = max(f[1] for f in synthetic.values())
    evens = [n for n, f in synthetic.items() if top - f[1] < 0.01]  # ties at two decimals are ties
    even, least = evens[0], min(synthetic, key=lambda n: synthetic[n][1])
    most = max(synthetic, key=lambda n: synthetic[n][0])
    parts = ", ".join(f"{n} {c}/{k}" for n, (c, _) in facts.items())
    tied = "'s and ".join(evens)
    who = f"**{even}**'s predictions are" if len(evens) == 1 else f"{tied}'s predictions are (a tie)"
    words = (f"**What this grid shows:** classes the model predicts in each set — {parts}. Of the synthetic sets, "
             f"{who} spread most evenly over the classes and **{least}**'s least "
             f"(entropy of the predicted classes {top:.2f} vs {synthetic[least][1]:.2f}; 1 = every "
             "class equally often, 0 = one class)")
    if len(evens) == 1 and synthetic[most][0] > synthetic[even][0]:
        words += f"; {most} covers more classes ({synthetic[most][0]}) but less evenly"
    return words + ". One seed's images: the Evidence page has many seeds."


# ---------------------------------------------------------------------------------------- homogenization
def pick_channel(diag) -> tuple[int, int]:
    t = diag.targets
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("BN layer", range(t.num_layers), index=0, key="layer", bind="query-params",
                         format_func=lambda i: f"{i}: {t.names[i]} ({t.channels[i]} channels)")
    channel = c2.number_input("Channel", 0, 4096, 0, key="channel", bind="query-params")
    return int(layer), min(int(channel), t.channels[layer] - 1)


def channel_means(diag, layer: int) -> dict[str, pd.DataFrame]:
    t = diag.targets
    off, c = dv.targets_offset(t, layer), t.channels[layer]
    return {name: pd.DataFrame({"channel": range(c), "mu": p.mean[:, off:off + c].mean(0).numpy(),
                                "sigma": p.std[:, off:off + c].mean(0).numpy()})
            for name, p in diag.probes.items()}


def spread_takeaway(spreads: dict[str, dict], layer: int) -> str:
    """The sentence the spread ratios support, at this layer and over all layers."""
    synthetic = {n: s for n, s in spreads.items() if n != REAL}
    at = {n: float(s["mean"][layer]) for n, s in synthetic.items()}
    overall = {n: float(np.mean(s["mean"])) for n, s in synthetic.items()}
    ranked = sorted(overall, key=lambda n: abs(np.log(max(overall[n], 1e-9))))
    return ("**What this shows:** spread of per-sample means relative to real data (1 = as varied as real) — at "
            f"layer {layer}: " + ", ".join(f"{n} {v:.2f}" for n, v in at.items()) + "; averaged over layers: "
            + ", ".join(f"{n} {overall[n]:.2f}" for n in ranked) + f". Closest to real overall: **{ranked[0]}**. "
            + ("Every synthetic set is below 1 on average: all are more alike than real data (homogenized)."
               if all(v < 1 for v in overall.values()) else ""))


def homogenization(result) -> None:
    diag = result.diagnosis
    layer, channel = pick_channel(diag)
    d, g = float(diag.margins.delta[layer]), float(diag.margins.gamma[layer])
    bn = dv.bn_point(diag.targets, layer, channel)
    spreads = diag.spreads()
    st.markdown(spread_takeaway(spreads, layer))
    left, right = st.columns(2)
    scatter = dv.channel_scatter(diag.probes, diag.targets, layer, channel)
    left.altair_chart(vega.channel_scatter(scatter, bn, (d, g)), key="scatter", width="stretch")
    values = {name: dv.channel_activations(diag.model, x, diag.targets, layer, channel)
              for name, x in diag.images.items()}
    right.plotly_chart(charts.activation_histogram(dv.activation_histogram(values, *bn)), key="histogram")
    gen = result.plan.generation
    st.caption(f"Slack band at this layer: δ = {d:.3g} on means, γ = {g:.3g} on stds (ε = {gen.epsilon:g}"
               f"{'' if gen.sda else ', SDA off: band drawn for reference'}). The ✕ is the BN running statistics.")
    replay(result, diag, layer, channel, bn, (d, g))
    st.altair_chart(vega.layer_spread(dv.layer_spread_frame(spreads, diag.targets)), key="spread", width="stretch")
    st.caption("Below 1: the set's per-sample statistics vary less than real data's at that layer (homogenized).")
    band = dv.sda_band(diag.targets, layer, diag.margins.delta, diag.margins.gamma)
    st.plotly_chart(charts.sda_band(band, channel_means(diag, layer)), key="band")


def replay(result, diag, layer: int, channel: int, bn, band) -> None:
    """The generator's snapshots of seed 0, one animation frame per snapshot."""
    snaps = result.extras.get("snapshots") or {}
    if not snaps:
        st.caption("Replay: this run kept no snapshots (runs reopened from the history keep only the final sets).")
        return
    col = dv.targets_offset(diag.targets, layer) + channel
    frames = [pd.DataFrame({"iteration": s["iteration"], "set": label(src), "mean": s["mean"][:, col].numpy(),
                            "std": s["std"][:, col].numpy()})
              for (src, _), kept in snaps.items() for s in kept]
    frames = pd.concat(frames, ignore_index=True)
    st.altair_chart(vega.replay(frames, bn, band), key="replay", width="stretch")
    st.markdown("**What the replay shows:** " + replay_takeaway(frames, bn))


# ---------------------------------------------------------------------------------------- embedding
def embedding(result, spec, present: bool) -> None:
    c1, c2 = st.columns(2)
    method = c1.radio("Method", ["pca", "tsne"], horizontal=True, key="emb", bind="query-params",
                      format_func=lambda m: {"pca": "PCA (instant)", "tsne": "t-SNE (seconds)"}[m])
    color = c2.radio("Colour by", ["set", "class"], horizontal=True, key="color", bind="query-params")
    probes = result.diagnosis.probes
    with st.spinner("Embedding…"):
        df = embedding_frame({n: p.features for n, p in probes.items()},
                             {n: p.logits.argmax(1) for n, p in probes.items()}, method=method)
    df["index"] = df.groupby("set").cumcount()
    event = st.plotly_chart(charts.embedding(df, color), key="embedding", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    st.caption("Select points (click, box or lasso) to see their images below. t-SNE keeps neighbourhoods, not "
               "distances; PCA is linear and honest about distances but shows only two directions.")
    picked = [p["customdata"] for p in (event.selection.points if event else []) if p.get("customdata")][:24]
    if picked:
        images = [result.diagnosis.images[name][int(i)] for name, i in picked]
        st.image(list(to_pixels(torch.stack(images), spec.mean, spec.std)), width=style.thumb(present),
                 caption=[f"{name} #{int(i)}" for name, i in picked])


# ---------------------------------------------------------------------------------------- metrics
def metrics(result) -> None:
    metric_table(result.metrics)
    spectra = {name: similarity_spectrum(p.features) for name, p in result.diagnosis.probes.items()}
    st.plotly_chart(charts.spectrum(spectra), key="spectrum")
    first = {n: float(ev.max() / ev.sum()) for n, ev in spectra.items()}
    st.caption("Feature-space similarity spectrum: a homogenized set puts most of the weight on the first "
               "eigenvalue. Share of the first: " + ", ".join(f"{n} {v:.0%}" for n, v in first.items()) + ".")
