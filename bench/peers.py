"""Peers side by side (issue 18, item 4): Sony MCT's data generation beside our ZeroQ and DSG.

    # once: a separate venv with MCT (docs/peers.md, "Setup"); never the project's own
    OMP_NUM_THREADS=1 python bench/peers.py speed --iterations 30 --repeats 3
    OMP_NUM_THREADS=1 nice -n 15 python bench/peers.py quality --seeds 0,1,2 --iterations 200
    python bench/peers.py doc        # docs/peers.md from the rows kept so far (each part also writes it)

Sources, all on the same model, images, batch, iterations and seeds:

- ``zeroq``, ``dsg``, ``dsg-clip``: ours (``GenerationConfig``: ZeroQ's recipe; DSG; DSG with
  ``pixel_range="clip"``), made in one joint pass by ``generated_sets`` and cached (``SetCache``).
- ``mct``: MCT 2.6.1's PyTorch data generation with its defaults (RAdam, plateau-and-reset, output loss,
  its smoothing/flip/crop pipeline with 32 extra pixels, clipping); ``mct-28``: its 28x28 variant (identity
  pipeline, no extra pixels, no initialisation margin). MCT assumes 3 input channels, so it optimizes for
  the model behind ``peer_adapter.FirstChannel``; its normalization is set to the model's own, so its clip
  grid is the model's valid input range. Its sets are cached as safetensors.
- ``real``: 64 real training images of the seed (the target every generator aims at).

``speed`` times each generator alone, interleaved in one process (the order rotates between repeats), as
seconds per iteration over our DSG's: read the ratios. ``quality`` adds, per seed, our diversity metrics
(``diagnose`` against 512 fixed real images) and top-1 at W3A3 min/max and W4A4 DSG-avg with range jitter
0.8/1.0/1.2 (``quantize_and_evaluate``); ``--adaround`` adds the AdaRound cells, ``--recon-iters`` Adam
steps per layer (default 100, the pixel-range control's; rows record it: runs before it was an option
used the engine's default, 200). ``--sources`` runs some sources only. Finished rows are kept in
bench/rows/peers.jsonl (committed), so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import random
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import Rows, header, register_models, rows_file, write_doc
from peer_adapter import FirstChannel, channel0_affine, peer_normalization, to_model_space
from safetensors.torch import load_file, save_file

from dsg_core import provenance
from dsg_core.diagnostics import REAL, diagnose
from dsg_core.experiments import Plan, Resources, SetCache, generated_sets, quantize_and_evaluate, real_calibration
from dsg_core.generation import GenerationConfig, generate
from dsg_core.quant import QuantConfig
from dsg_core.quant.ptq import RECONSTRUCTORS
from dsg_core.sources import source_config

CACHE = Path(__file__).resolve().parent / "cache" / "peers"
OURS = {"zeroq": ("zeroq", "free"), "dsg": ("dsg", "free"), "dsg-clip": ("dsg", "clip"),
        "best": ("best", "free")}  # (source of dsg_core.sources, pixel range); best keeps its own (clamp-after)
MCT = ("mct", "mct-28")
SOURCES = (*OURS, *MCT, "real")
LABELS = {"zeroq": "ZeroQ (ours)", "dsg": "DSG (ours)", "dsg-clip": "DSG, pixels clipped (ours)",
          "best": "Best preset (ours: DSG reference without SDA, clamped)",
          "mct": "MCT, default pipeline", "mct-28": "MCT, 28x28 variant", "real": "Real (64 images)"}
CELLS = (("3/3", "minmax"), ("4/4", "dsg-avg"))
ADAROUND_CELLS = (("3/3", "adaround"), ("4/4", "adaround"))
RECON_ITERS = 100  # the control's (bench/reproduce.py, bench/recipes.py); rows made before the option used 200
JITTER = (0.8, 1.0, 1.2)
SHORT = 5  # iterations of the short timing run, whose time is the set-up plus SHORT iterations
REFERENCE_IMAGES = 512  # the first training images: every set's metrics on one scale
METRICS = ("stat_spread_ratio", "frechet_distance", "recall", "precision", "feature_effective_rank",
           "mean_cosine_similarity", "class_coverage", "out_of_range_fraction", "max_excursion")


# ------------------------------------------------------------------------------------------ generators
def our_config(source: str, *, samples: int, iterations: int, seed: int, image_size: int) -> GenerationConfig:
    name, pixel_range = OURS[source]
    base = GenerationConfig(samples=samples, batch_size=samples, iterations=iterations, seed=seed,
                            pixel_range=pixel_range)
    return source_config(name, base, image_size)


@contextmanager
def mct_settings(variant: str, norm: list[list[float]]):
    """MCT's module-level tables set for one run and restored after: its "torchvision" normalization
    replaced by the model's own (MCT's only per-model input setting), and for ``mct-28`` its Gaussian
    initialisation without the 32-pixel margin it adds even to the identity pipeline."""
    from model_compression_toolkit.data_generation.common.enums import DataInitType, ImageNormalizationType
    from model_compression_toolkit.data_generation.common.image_pipeline import image_normalization_dict
    from model_compression_toolkit.data_generation.pytorch.optimization_functions.image_initilization import (
        image_initialization_function_dict as inits,
    )
    saved_norm, saved_init = image_normalization_dict[ImageNormalizationType.TORCHVISION], inits[DataInitType.Gaussian]
    image_normalization_dict[ImageNormalizationType.TORCHVISION] = norm
    if variant == "mct-28":
        inits[DataInitType.Gaussian] = partial(saved_init.func, **{**saved_init.keywords, "crop": 0})
    try:
        yield
    finally:
        image_normalization_dict[ImageNormalizationType.TORCHVISION] = saved_norm
        inits[DataInitType.Gaussian] = saved_init


def mct_generate(model: torch.nn.Module, spec, variant: str, *, samples: int, iterations: int,
                 seed: int) -> torch.Tensor:
    """(samples, 1, H, W) images in the model's input space, made by MCT for ``model``."""
    import model_compression_toolkit as mct
    from model_compression_toolkit.data_generation.common.enums import ImagePipelineType

    norm = peer_normalization(spec.mean[0], spec.std[0])
    scale, shift = channel0_affine(norm[0], norm[1], spec.mean[0], spec.std[0])
    extra = dict(image_pipeline_type=ImagePipelineType.IDENTITY, extra_pixels=0) if variant == "mct-28" else {}
    cfg = mct.data_generation.get_pytorch_data_generation_config(n_iter=iterations, data_gen_batch_size=samples,
                                                                 **extra)
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)  # its start, crops, flips, batch order
    with mct_settings(variant, norm):
        out = mct.data_generation.pytorch_data_generation_experimental(
            model=FirstChannel(model, scale, shift).eval(), n_images=samples, output_image_size=spec.input_shape[-1],
            data_generation_config=cfg)
    return to_model_space(torch.cat(out), scale, shift).detach()


def mct_set(res: Resources, variant: str, *, samples: int, iterations: int, seed: int, cache: Path) -> torch.Tensor:
    """MCT's set, from the cache when made before."""
    path = cache / "mct" / res.spec.name / f"{variant}-n{samples}-i{iterations}-s{seed}.safetensors"
    if path.exists():
        return load_file(path)["images"]
    images = mct_generate(res.model, res.spec, variant, samples=samples, iterations=iterations, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"images": images.contiguous()}, path)
    return images


def calibration_sets(res: Resources, *, samples: int, iterations: int, seed: int,
                     cache: Path) -> dict[str, torch.Tensor]:
    """{source: images} of one seed: ours in one joint pass (cached), MCT's, the real ones."""
    size = res.spec.input_shape[-1]
    cfgs = {src: our_config(src, samples=samples, iterations=iterations, seed=seed, image_size=size) for src in OURS}
    ours = generated_sets(res.model, res.spec, cfgs, cache=SetCache(cache / "sets"))
    mct = {v: mct_set(res, v, samples=samples, iterations=iterations, seed=seed, cache=cache) for v in MCT}
    real = real_calibration(res.spec.name, samples, seed, pool=res.pool)
    return {**{src: s.images for src, s in ours.items()}, **mct, "real": real}


# ------------------------------------------------------------------------------------------ speed
def speed(res: Resources, rows: Rows, *, samples: int, iterations: int, repeats: int) -> None:
    """Each generator alone at ``iterations`` and at ``SHORT`` iterations, in an order that rotates between
    repeats; the difference of the two runs over the difference of iterations is the cost of one iteration
    without the one-off set-up (MCT's tracing and first statistics, our SDA margins)."""
    def ours(src: str, n: int):
        return generate(res.model, res.spec.input_shape, our_config(src, samples=samples, iterations=n, seed=0,
                                                                 image_size=res.spec.input_shape[-1]),
                        num_classes=res.spec.num_classes, valid_range=res.spec.valid_range)

    def theirs(variant: str, n: int):
        return mct_generate(res.model, res.spec, variant, samples=samples, iterations=n, seed=0)

    run = {src: partial(ours, src) for src in OURS} | {v: partial(theirs, v) for v in MCT}
    names = list(run)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            for n in (iterations, SHORT):
                wall, cpu = time.perf_counter(), time.process_time()
                run[name](n)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rows.add({"kind": "speed", "model": res.spec.name, "source": name, "repeat": r, "samples": samples,
                          "iterations": n, "long": iterations, "threads": torch.get_num_threads(), "wall": wall,
                          "cpu": cpu, **provenance.stamp(None)})
                print(f"repeat {r}: {name}, {n} iterations: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)


# ------------------------------------------------------------------------------------------ quality
def quality(res: Resources, rows: Rows, *, seeds: list[int], samples: int, iterations: int, adaround: bool,
            cache: Path, recon_iters: int = RECON_ITERS, sources: tuple[str, ...] = SOURCES) -> None:
    """Per seed: the metrics of every set against the fixed real reference, then each cell's top-1."""
    cells = CELLS + (ADAROUND_CELLS if adaround else ())
    key = dict(model=res.spec.name, samples=samples, iterations=iterations)
    reference = res.pool[:REFERENCE_IMAGES]
    for seed in seeds:
        todo = [(s, b, q) for s in sources for b, q in cells
                if not rows.has(kind="top1", source=s, seed=seed, bits=b, quantizer=q, **key,
                                recon_iters=steps(q, recon_iters))]
        need_metrics = [s for s in sources if s != "real"
                        and not rows.has(kind="metrics", source=s, seed=seed, bits=None, quantizer=None, **key)]
        if not todo and not need_metrics:
            continue
        t = time.time()
        sets = calibration_sets(res, samples=samples, iterations=iterations, seed=seed, cache=cache)
        print(f"seed {seed}: sets in {time.time() - t:.0f} s", flush=True)
        if need_metrics:
            some = {s: sets[s] for s in (*need_metrics, "real")}  # the sets without metrics (and real's)
            diag = diagnose(res.model, some, reference, res.spec.input_shape, valid_range=res.spec.valid_range)
            for src, m in diag.metrics().drop(index=REAL).iterrows():
                rows.add({"kind": "metrics", "source": src, "seed": seed, "bits": None, "quantizer": None, **key,
                          **m.to_dict()})
        for src, bits, qz in todo:
            w, a = (int(v) for v in bits.split("/"))
            n = steps(qz, recon_iters)
            cfg = QuantConfig(wbits=w, abits=a, quantizer=qz, seed=seed, **({"recon_iters": n} if n else {}))
            out = quantize_and_evaluate(res.model, sets[src], cfg, res.test, jitter=JITTER)
            rows.add({"kind": "top1", "source": src, "seed": seed, "bits": bits, "quantizer": qz, **key,
                      "recon_iters": n, "top1": out["quant_top1"], "fp32_top1": out["fp32_top1"],
                      "jitter": out["range_jitter"], "jitter_mean": out["range_jitter_mean"],
                      **provenance.stamp({**key, "seed": seed})})
            print(f"seed {seed}: {src} W{bits} {qz}{f' ({n} steps)' if n else ''}: {out['quant_top1']:.1f} "
                  f"(jitter mean {out['range_jitter_mean']:.1f})", flush=True)


def steps(quantizer: str, recon_iters: int) -> int | None:
    """The reconstruction steps a cell of ``quantizer`` runs (None for the range rules, which have none)."""
    return recon_iters if quantizer in RECONSTRUCTORS else None


def key_of(row: dict) -> tuple:
    return tuple(row.get(k) for k in ("kind", "model", "source", "seed", "repeat", "samples", "iterations", "long",
                                      "bits", "quantizer", "recon_iters"))


# ------------------------------------------------------------------------------------------ render
def ms(v: pd.Series) -> str:
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}"


def speed_table(df: pd.DataFrame) -> list[str]:
    """Per generator: the median over repeats of (long run - short run) / (its extra iterations), as a
    ratio to our DSG's; and the whole long run per iteration (set-up included), also as a ratio."""
    out = []
    for (model, samples, long), part in df.groupby(["model", "samples", "long"]):
        per_run = part.pivot_table(index=["source", "repeat"], columns="iterations", values=["wall", "cpu"])
        slope = {m: (per_run[(m, long)] - per_run[(m, SHORT)]) / (long - SHORT) for m in ("wall", "cpu")}
        whole = {m: per_run[(m, long)] / long for m in ("wall", "cpu")}
        med = {k: {m: v[m].groupby(level="source").median() for m in v} for k, v in (("it", slope), ("all", whole))}
        out += [f"### {model}, {int(samples)} images (one batch), {int(long)} against {SHORT} iterations, "
                f"{part['repeat'].nunique()} repeats, {int(part['threads'].iloc[0])} thread(s)", "",
                "| generator | per iteration: wall / our DSG | per iteration: CPU / our DSG | "
                "whole run / iterations: wall / our DSG |", "|---|---|---|---|"]
        for s in SOURCES:
            if s in med["it"]["wall"].index:
                it, whole_run = med["it"], med["all"]
                out.append(f"| {LABELS[s]} | {it['wall'][s] / it['wall']['dsg']:.2f} | "
                           f"{it['cpu'][s] / it['cpu']['dsg']:.2f} | "
                           f"{whole_run['wall'][s] / whole_run['wall']['dsg']:.2f} |")
        out.append("")
    return out


def calibrated(c: pd.DataFrame) -> str:
    """Top-1 at the calibrated ranges: mean ± std over seeds (mean over the range jitter) n."""
    return f"{ms(c['top1'])} ({c['jitter_mean'].mean():.1f}) n={len(c)}"


def jittered(c: pd.DataFrame) -> str:
    """Top-1 at each range-jitter factor, mean over seeds."""
    return " / ".join(f"{c['jitter'].map(lambda j, f=f: j[f]).mean():.1f}" for f in ("0.8", "1", "1.2"))


def top1_table(top1: pd.DataFrame, cells: list[tuple[str, str, float | None]], show) -> list[str]:
    """One row per set, one column per (bits, quantizer, reconstruction steps); ``top1`` has ``recon_iters``."""
    out = ["| set | " + " | ".join(f"W{b.replace('/', 'A')} {q}" + (f" ({n:.0f} steps)" if pd.notna(n) else "")
                                   for b, q, n in cells) + " |",
           "|---|" + "---|" * len(cells)]
    for src in SOURCES:
        parts = [top1[(top1["source"] == src) & (top1["bits"] == b) & (top1["quantizer"] == q)
                      & ((top1["recon_iters"] == n) if pd.notna(n) else top1["recon_iters"].isna())]
                 for b, q, n in cells]
        out.append(f"| {LABELS[src]} | " + " | ".join(show(c) if len(c) else "-" for c in parts) + " |")
    return out


def quality_tables(df: pd.DataFrame) -> list[str]:
    out = []
    for (model, samples, iterations), part in df.groupby(["model", "samples", "iterations"]):
        metrics, top1 = part[part["kind"] == "metrics"], part[part["kind"] == "top1"]
        n = top1["seed"].nunique()
        out += [f"### {model}, {samples} images, {iterations} iterations, {n} seed(s) "
                f"({', '.join(str(int(s)) for s in sorted(top1['seed'].unique()))})", "",
                "Diversity metrics (mean over seeds; against 512 fixed real training images):", "",
                "| set | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for src in SOURCES:
            m = metrics[metrics["source"] == src]
            if len(m):
                out.append(f"| {LABELS[src]} | " + " | ".join(f"{m[c].mean():.3g}" for c in METRICS) + " |")
        top1 = top1.assign(recon_iters=top1.get("recon_iters", pd.Series(index=top1.index, dtype=float)))
        steps_of = [None if pd.isna(n) else int(n) for n in top1["recon_iters"]]  # NaN never equals NaN: None
        cells = sorted(dict.fromkeys(zip(top1["bits"], top1["quantizer"], steps_of)),
                       key=lambda c: (c[1] in RECONSTRUCTORS, c[1], -1 if pd.isna(c[2]) else c[2], c[0]))
        out += ["", "Top-1 % (mean ± std over seeds; in brackets the mean over range jitter 0.8/1.0/1.2):", ""]
        out += top1_table(top1, cells, calibrated)
        out += ["", "Top-1 % with every activation range scaled by 0.8 / 1.0 / 1.2 (means over seeds): does the "
                "cell survive a slightly different range?", ""]
        out += top1_table(top1, cells, jittered)
        out.append(f"\nFP32 top-1: {top1['fp32_top1'].iloc[0]:.1f}.\n")
    return out


def render(rows: list[dict]) -> str:
    df = pd.DataFrame({key_of(r): r for r in rows}.values())
    out = [header("Peers side by side: MCT's data generation, our ZeroQ and DSG", timing=False), "",
           (Path(__file__).resolve().parent / "peers_notes.md").read_text(), "", "## Seconds per iteration", "",
           "Medians of the repeats, measured in one process, interleaved; as ratios to our DSG (the machine is "
           "shared, so the absolute times are not reported).", ""]
    out += speed_table(df[df["kind"] == "speed"]) if "speed" in set(df.get("kind", [])) else ["(not run yet)", ""]
    out += ["## Diversity and top-1", ""]
    q = df[df["kind"].isin(["metrics", "top1"])] if len(df) else df
    out += quality_tables(q) if len(q) else ["(not run yet)"]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=("speed", "quality", "doc"))
    p.add_argument("--model", default="resnet20_mnist")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cache", type=Path, default=CACHE, help="sets (default bench/cache/peers)")
    p.add_argument("--rows", type=Path, default=rows_file("peers"), help="rows (default bench/rows/peers.jsonl)")
    p.add_argument("--doc", type=Path, help="write the page here instead of docs/peers.md (e.g. for a trial run)")
    p.add_argument("--adaround", action="store_true", help="also the AdaRound cells (minutes per set on a CPU)")
    p.add_argument("--recon-iters", type=int, default=RECON_ITERS,
                   help=f"AdaRound's Adam steps per layer (default {RECON_ITERS}, the pixel-range control's)")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated, of: " + ", ".join(SOURCES))
    p.add_argument("--setup", help="a bench module whose register() adds --model first (unseen_model: vgg_bn_mnist)")
    args = p.parse_args()
    chosen = tuple(v.strip() for v in args.sources.split(",") if v.strip())
    if not chosen or set(chosen) - set(SOURCES):
        raise SystemExit(f"--sources: choose from {', '.join(SOURCES)} (got {args.sources!r})")
    register_models(args.setup)
    rows = Rows(args.rows, key_of)
    if args.part != "doc":
        res = Resources.load(Plan(args.model))
        if args.part == "speed":
            speed(res, rows, samples=args.samples, iterations=args.iterations, repeats=args.repeats)
        else:
            quality(res, rows, seeds=[int(s) for s in args.seeds.split(",")], samples=args.samples,
                    iterations=args.iterations, adaround=args.adaround, cache=args.cache,
                    recon_iters=args.recon_iters, sources=chosen)
    text = render(rows.rows)
    if args.doc:
        args.doc.write_text(text)
    else:
        write_doc("peers.md", text)


if __name__ == "__main__":
    main()
