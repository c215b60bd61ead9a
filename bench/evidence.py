"""The evidence bundle behind the dashboard's first page, made by one command:

    python bench/evidence.py                       # after `bench/reproduce.py --profile control`
    python bench/evidence.py --variant-seeds 3     # fewer seeds for the small multiples

It reads the control profile's result rows (every seed's top-1 and range-jitter mean per model,
source, pixel range and cell, and the diversity metrics), then runs the engine's ``run(plan)`` for
what a page needs besides numbers: for one seed per model, source and pixel range the sample grid
and per-sample BN statistics; snapshots of the optimization (the replay); and the small multiples
(DSG at several ε and with each component set, over seeds). Generated sets are shared with the
reproduction through its set cache. It also carries the shipped preset `best` against real data
and MCT's generator at issue 18's goal cells, from ``bench/recipes.py``'s and ``bench/peers.py``'s rows
(``docs/best.md`` renders the same rows), and the check of the page's verdicts at the paper's 500
generation steps (``--parts steps``: ``bench/reproduce.py --profile control-full``'s rows and
``bench/zeroq_steps.py``'s replay; this part alone patches the committed bundle). The bundle records
the code version and this command.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from common import DOCS, machine, patch_bundle, rows_file, write_bundle

from dsg_core import provenance
from dsg_core.diagnostics import REAL
from dsg_core.diagnostics import views as dv
from dsg_core.errors import DataError, DSGError
from dsg_core.experiments import Plan, RunResult, SetCache, run
from dsg_core.generation import GenerationConfig
from dsg_core.models import get_spec
from dsg_core.sources import label

REPO = Path(__file__).resolve().parents[1]
MODELS = ("resnet20_mnist", "mobilenetv2_mnist")
SOURCES = ("dsg", "zeroq", "gaussian", "real")
RANGES = ("free", "clamp-after", "clip")
SAMPLES, ITERATIONS = 64, 200           # the quick/control profile's sets (shared through the set cache)
GRID = 16                               # images per sample grid
REPLAY_LAYERS = 3                       # layers kept in the replay (first, middle, last)
EPSILONS = (0.5, 0.7, 0.9, 1.0)
COMPONENTS = {"SDA": (True, False, False), "SDA+LSE": (True, True, False), "SDA+LSE+SCI": (True, True, True),
              "LSE": (False, True, False), "SCI": (False, False, True)}
COMPONENT_SOURCES = {"sda": "SDA", "sda+lse": "SDA+LSE", "dsg": "SDA+LSE+SCI", "lse": "LSE", "sci": "SCI"}
CELLS = (((3, 3), "minmax"),)  # the cell where DSG's lead survives the pixel-range control (docs/pixel-range.md)
# the components' cells from the control's rows: also W2A4 AdaRound, where SDA costs what LSE and SCI do not
COMPONENT_CELLS = CELLS + (((2, 4), "adaround"),)
JITTER = (0.8, 1.0, 1.2)  # as the control profile of bench/reproduce.py


def code_version() -> dict:
    """The code that made the bundle: the full commit (the page links it) and the provenance stamp's."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "dsg_core")),
            "code_version": provenance.code_version(), "source_hash": provenance.source_hash()}


def rounded(values, digits: int = 4) -> list:
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=float).ravel()]


# ------------------------------------------------------------------------------------------ rows
def read_rows(path: Path, allow_mixed: bool = False) -> tuple[list[dict], list[dict], dict[str, list[str]]]:
    """(cells, metrics, code versions) of the control profile's sources (the cache also holds the
    control-sources profile's: the small multiples show those), in the bundle's shape (bits as 'W3A3');
    rows of several code versions are refused (DataError) unless ``allow_mixed``."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["source"] in SOURCES]
    provenance.check_versions(rows, allow_mixed=allow_mixed)
    cells, metrics = [], []
    for r in rows:
        base = {"model": r["model"], "source": r["source"], "pixel_range": r.get("pixel_range", "free"),
                "seed": r["seed"]}
        if r.get("kind") == "main":
            w, a = r["bits"].split("/")
            cells.append({**base, "bits": f"W{w}A{a}", "quantizer": r["quantizer"], "top1": r["top1"],
                          "jitter_mean": r.get("jitter_mean")})
        elif r.get("kind") == "metrics":
            metrics.append({**base, **{k: v for k, v in r.items() if isinstance(v, (int, float)) and k not in base
                                       and k not in ("epsilon",)}})
    return cells, metrics, provenance.versions(rows)


def goal_rows(recipes_rows: Path, peers_rows: Path) -> tuple[list[dict], dict]:
    """`best`, real data and MCT at the goal cells, one row per model, set and seed, as ``bench/best.py``
    reads them (MCT's AdaRound rows with the recipes' steps only); and what they came from."""
    import best
    import recipes
    ours, _ = best.recipe_rows(recipes_rows)
    ours = ours[[(s, p) in (best.BEST, ("real", "free")) for s, p in zip(ours.source, ours.pixel_range)]]
    mct = best.like_recipes(best.read(peers_rows))
    mct = mct[mct.source == "mct"]
    out = []
    for part in (ours, mct):
        for r in part.to_dict("records"):
            if (r["bits"], r["quantizer"]) not in best.GOAL_CELLS:
                continue
            w, a = r["bits"].split("/")
            out.append({"model": r["model"], "set": r["source"], "seed": int(r["seed"]), "bits": f"W{w}A{a}",
                        "quantizer": r["quantizer"], "top1": r["top1"], "jitter_mean": r["jitter_mean"],
                        "held_out": r["model"] in recipes.HELD_OUT})
    used = ((recipes_rows, [r for r in best.lines(recipes_rows) if r.get("variant") in ("no-sda", "real")]),
            (peers_rows, [r for r in best.lines(peers_rows) if r.get("source") == "mct"]))
    versions = {relative(path): provenance.versions(rows) for path, rows in used}
    fp32 = {m: fp32_top1(m) for m in dict.fromkeys(r["model"] for r in out)}
    return out, {"rows": versions, "renders": "python bench/best.py (docs/best.md)", "fp32_top1": fp32}


def steps_part(control_full: Path, allow_mixed: bool = False) -> dict:
    """The Evidence page's check of its verdicts at the paper's generation steps (key ``steps``): the control's
    cells on the full profile's 500-step sets (``bench/reproduce.py --profile control-full``: as generated and
    clamped after, with range jitter) and ``bench/zeroq_steps.py``'s replay of ZeroQ's and DSG's sets step by
    step on one model."""
    import zeroq_steps
    from best import lines
    from reproduce import PROFILES

    for path, made_by in ((control_full, "bench/reproduce.py --profile control-full"),
                          (zeroq_steps.ROWS, "bench/zeroq_steps.py")):
        if not path.is_file():
            raise DataError(f"no rows at {path}: they come from `python {made_by}`")
    replay = lines(zeroq_steps.ROWS)
    provenance.check_versions([*lines(control_full), *replay], allow_mixed=allow_mixed)  # one code version
    cells, _, versions = read_rows(control_full, allow_mixed)
    return {"model": zeroq_steps.MODEL, "iterations": PROFILES["control-full"]["iterations"], "cells": cells,
            "replay": zeroq_steps.replay_rows(replay), "command": command(),
            "renders": "docs/pixel-range-full.md, docs/zeroq-steps.md",
            "rows": {relative(control_full): versions, relative(zeroq_steps.ROWS): provenance.versions(replay)}}


def relative(path: Path) -> str:
    """A rows file as the bundle names it: relative to the repository when it is in it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def fp32_top1(model_name: str) -> float:
    """The FP32 model's top-1 on the test images ``bench/recipes.py`` scored (the held-out models have no
    facts in the bundle otherwise)."""
    import recipes
    from common import register_models

    from dsg_core.evaluate import top1_of
    register_models("unseen_model")
    test = recipes.resources(model_name).test
    return round(top1_of(test.fp_logits, test.y), 2)


def component_rows(path: Path, model: str, ranges: set[str]) -> list[dict]:
    """The SDA / LSE / SCI variants' rows at the bundle's cells from the control's rows, where the
    control-sources profile ran them as sources over all its seeds: the same configurations and sets
    as the variants (one set cache), so the small multiples rest on 10 seeds instead of the few the
    variants part generates for its sample grids."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cells = {(f"{w}/{a}", q) for (w, a), q in COMPONENT_CELLS}
    spread = {(r["source"], r.get("pixel_range", "free"), r["seed"]): r.get("stat_spread_ratio", float("nan"))
              for r in rows if r.get("kind") == "metrics" and r["model"] == model}
    out = []
    for r in rows:
        pr = r.get("pixel_range", "free")
        if (r.get("kind") == "main" and r["model"] == model and r["source"] in COMPONENT_SOURCES and pr in ranges
                and (r["bits"], r["quantizer"]) in cells):
            w, a = r["bits"].split("/")
            out.append({"model": model, "family": "components", "variant": COMPONENT_SOURCES[r["source"]],
                        "pixel_range": pr, "seed": r["seed"], "bits": f"W{w}A{a}", "quantizer": r["quantizer"],
                        "top1": r["top1"], "jitter_mean": r.get("jitter_mean"),
                        "stat_spread_ratio": spread.get((r["source"], pr, r["seed"]), float("nan"))})
    order = list(COMPONENTS)  # the small multiples' order, as the variants part writes them
    return sorted(out, key=lambda r: (r["pixel_range"], order.index(r["variant"]), r["seed"]))


# ------------------------------------------------------------------------------------------ examples
def to_uint8(images: torch.Tensor, spec) -> np.ndarray:
    m = torch.tensor(spec.mean).view(1, -1, 1, 1)
    s = torch.tensor(spec.std).view(1, -1, 1, 1)
    return ((images.cpu() * s + m).clamp(0, 1)[:, 0] * 255).round().to(torch.uint8).numpy()


def example(result: RunResult, source: str, **key) -> dict:
    """A sample grid, predictions and per-sample statistics (channel 0 of every layer) of one set."""
    spec, diag = get_spec(result.plan.model), result.diagnosis
    name = REAL if source == "real" else label(source)
    images = result.calib[(source, result.plan.seeds[0])][:GRID]
    p = diag.probes[name]
    conf, pred = p.probs.max(1)
    cols = [dv.targets_offset(diag.targets, i) for i in range(diag.targets.num_layers)]
    spread = diag.spreads()[name]
    pixels = to_uint8(images, spec)
    return {**key, "source": source, "shape": list(pixels.shape),
            "images": base64.b64encode(pixels.tobytes()).decode(), "pred": pred[:GRID].tolist(),
            "conf": rounded(conf[:GRID], 3), "mean": [rounded(p.mean[:, c]) for c in cols],
            "std": [rounded(p.std[:, c]) for c in cols], "spread_mean": rounded(spread["mean"]),
            "spread_std": rounded(spread["std"])}


def model_facts(result: RunResult) -> dict:
    diag, spec = result.diagnosis, get_spec(result.plan.model)
    cols = [dv.targets_offset(diag.targets, i) for i in range(diag.targets.num_layers)]
    return {"fp32_top1": spec.fp32_top1, "valid_range": [spec.valid_range[0][0], spec.valid_range[1][0]],
            "layers": list(diag.targets.names), "channels": [int(c) for c in diag.targets.channels],
            "bn_mu": rounded(diag.targets.mu[cols].cpu()), "bn_sigma": rounded(diag.targets.sigma[cols].cpu()),
            "delta": rounded(diag.margins.delta.cpu()), "gamma": rounded(diag.margins.gamma.cpu())}


def snapshot_rows(result: RunResult, **key) -> list[dict]:
    """Per-sample statistics of channel 0 at a few layers, at every snapshot of seed 0."""
    diag = result.diagnosis
    n = diag.targets.num_layers
    layers = sorted({0, n // 2, n - 1})[:REPLAY_LAYERS]
    out = []
    for (source, _), kept in result.extras.get("snapshots", {}).items():
        for s in kept:
            cols = [dv.targets_offset(diag.targets, i) for i in layers]
            out.append({**key, "source": source, "iteration": s["iteration"], "layers": layers,
                        "mean": [rounded(s["mean"][:, c]) for c in cols],
                        "std": [rounded(s["std"][:, c]) for c in cols]})
    return out


def examples(models, cache: SetCache, replay_model: str, base: GenerationConfig) -> tuple[dict, list[dict], list[dict]]:
    facts, grids, replays = {}, [], []
    for model in models:
        for pr in RANGES:
            snaps = max(1, base.iterations // 20) if model == replay_model and pr in ("free", "clip") else 0
            plan = Plan(model, sources=SOURCES, seeds=(0,), bits=((3, 3),), generation=base.replace(pixel_range=pr),
                        snapshots=snaps, eval_images=100)
            result = run(plan, cache=cache)
            facts.setdefault(model, model_facts(result))
            grids += [example(result, src, model=model, pixel_range=pr) for src in SOURCES]
            replays += snapshot_rows(result, model=model, pixel_range=pr)
            print(f"examples: {model} {pr} ({result.seconds:.0f} s)", flush=True)
    return facts, grids, replays


# ------------------------------------------------------------------------------------------ variants
def variant_plans(model: str, seeds: int, base: GenerationConfig) -> dict[tuple[str, str], GenerationConfig]:
    out = {("epsilon", f"ε = {e:g}"): base.replace(epsilon=e) for e in EPSILONS}
    out |= {("components", name): base.replace(sda=a, lse=b, sci=c) for name, (a, b, c) in COMPONENTS.items()}
    return out


def variants(model: str, seeds: int, ranges, cache: SetCache, base: GenerationConfig) -> tuple[list[dict], list[dict]]:
    """Every variant over ``seeds`` at the two cells; a variant that equals another (ε 0.9 is
    SDA+LSE+SCI) costs no second generation: the set cache has it."""
    rows, grids = [], []
    for pr in ranges:
        for (family, name), gen in variant_plans(model, seeds, base.replace(pixel_range=pr)).items():
            for k, ((w, a), q) in enumerate(CELLS):
                plan = Plan(model, sources=("dsg",), seeds=tuple(range(seeds)), bits=((w, a),), quantizers=(q,),
                            jitter=JITTER, generation=gen, diagnose=k == 0)
                result = run(plan, cache=cache)
                if k == 0:
                    spread = result.metrics.set_index(["source", "seed"])["stat_spread_ratio"]
                    grids.append(example(result, "dsg", model=model, pixel_range=pr, variant=name, family=family))
                for r in result.results.to_dict("records"):
                    rows.append({"model": model, "family": family, "variant": name, "pixel_range": pr,
                                 "seed": r["seed"], "bits": r["bits"], "quantizer": r["quantizer"], "top1": r["top1"],
                                 "jitter_mean": r.get("jitter_mean"),
                                 "stat_spread_ratio": float(spread.get((r["source"], r["seed"]), float("nan")))})
                print(f"variant: {model} {pr} {name} W{w}A{a} {q} ({result.seconds:.0f} s)", flush=True)
    return rows, grids


def command() -> str:
    return "python " + " ".join(["bench/evidence.py", *sys.argv[1:]])


def keep(path: Path, data) -> None:
    """A part's output, with the command that made it beside it (the bundle lists them all)."""
    path.write_text(json.dumps(data))
    path.with_suffix(".command").write_text(command())
    print(f"kept {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=Path, default=rows_file("control"),
                    help="the control profile's rows (bench/reproduce.py --profile control)")
    ap.add_argument("--sets", type=Path, default=REPO / "bench/cache/control/sets", help="its set cache")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--variant-seeds", type=int, default=5)
    ap.add_argument("--variant-ranges", default="free,clip")
    ap.add_argument("--iterations", type=int, default=ITERATIONS, help="a smaller number only for a smoke test")
    ap.add_argument("--parts", default="examples,variants,bundle",
                    help="examples and variants are kept in bench/cache/evidence/ (run them in parallel processes); "
                         "bundle assembles them with the rows; steps alone puts the 500-step check into the "
                         "committed bundle (the bundle part includes it)")
    ap.add_argument("--recipes", type=Path, default=rows_file("recipes"),
                    help="bench/recipes.py's rows: `best` (its no-sda variant) and real data at the goal cells")
    ap.add_argument("--peers", type=Path, default=rows_file("peers"),
                    help="bench/peers.py's rows: MCT's generator at the same cells and seeds")
    ap.add_argument("--layer-jitter", type=Path, default=rows_file("layer-jitter"),
                    help="bench/layer_jitter.py's rows: resnet20's W3A3 AdaRound over a dense grid of range factors")
    ap.add_argument("--control-full", type=Path, default=rows_file("control-full"),
                    help="bench/reproduce.py --profile control-full's rows: the control on the full profile's sets")
    ap.add_argument("--work", type=Path, default=REPO / "bench/cache/evidence")
    ap.add_argument("--out", type=Path, default=DOCS / "data" / "evidence.json.gz")
    ap.add_argument("--allow-mixed", action="store_true",
                    help="use rows of several code versions together (the bundle lists them)")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    parts = args.parts.split(",")
    cache = SetCache(args.sets)
    base = GenerationConfig(samples=SAMPLES, batch_size=SAMPLES, iterations=args.iterations)
    args.work.mkdir(parents=True, exist_ok=True)
    if "bundle" in parts:  # rows of mixed code versions are refused before hours of examples
        cells, metrics, versions = read_rows(args.rows, args.allow_mixed)
    if "examples" in parts:
        keep(args.work / "examples.json", examples(models, cache, models[0], base))
    if "variants" in parts and args.variant_seeds:
        ranges = args.variant_ranges.split(",")
        keep(args.work / f"variants-{'-'.join(ranges)}.json",
             variants(models[0], args.variant_seeds, ranges, cache, base))
    if "bundle" not in parts:
        if "steps" in parts:
            patch_bundle(args.out, "steps", steps_part(args.control_full, args.allow_mixed))
        return
    facts, grids, replays = json.loads((args.work / "examples.json").read_text())
    variant_rows, variant_grids = [], []
    for path in sorted(args.work.glob("variants-*.json")):  # one file per process (--variant-ranges)
        more_rows, more_grids = json.loads(path.read_text())
        variant_rows, variant_grids = variant_rows + more_rows, variant_grids + more_grids
    controlled = component_rows(args.rows, models[0], {r["pixel_range"] for r in variant_rows})
    if controlled:  # the components' rows over all the control's seeds replace the variants part's few
        variant_rows = [r for r in variant_rows if r["family"] != "components"] + controlled
    seeds = {f: len({r["seed"] for r in variant_rows if r["family"] == f}) for f in ("components", "epsilon")}
    parts_made = [p.read_text() for p in sorted(args.work.glob("*.command"))]
    goal, goal_meta = goal_rows(args.recipes, args.peers)
    import best
    import layer_jitter
    bundle = {"meta": {**code_version(), "row_versions": versions, "command": command(), "parts": parts_made,
                       "rows": relative(args.rows),
                       "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "machine": machine(), "samples": SAMPLES, "iterations": args.iterations,
                       "seeds": int(max((c["seed"] for c in cells), default=-1)) + 1,
                       "variant_seeds": seeds, "goal": goal_meta},
              "models": facts, "cells": cells, "metrics": metrics, "examples": grids + variant_grids,
              "variants": variant_rows, "snapshots": replays, "goal": goal,
              "jitter_grid": layer_jitter.bundle_part(best.lines(args.layer_jitter), args.allow_mixed),
              "steps": steps_part(args.control_full, args.allow_mixed)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bundle(args.out, bundle)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(cells)} cells, {len(metrics)} metric rows, "
          f"{len(grids) + len(variant_grids)} sample grids, {len(variant_rows)} variant rows, {len(goal)} goal rows")


if __name__ == "__main__":
    try:
        main()
    except DSGError as exc:  # e.g. rows of several code versions without --allow-mixed
        raise SystemExit(f"error: {exc}") from None
