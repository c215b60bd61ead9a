"""The reproduction table: every calibration source x bit-width x quantizer x seed, on each
embedded model, plus the epsilon ablation and which diversity metric predicts accuracy.

    python bench/reproduce.py                          # the full protocol (hours on 2 cores)
    python bench/reproduce.py --profile quick          # the reduced run recorded in docs/results.md
    python bench/reproduce.py --render-only            # rebuild docs/results.md from saved rows
    python bench/reproduce.py --profile control        # the pixel-range control (docs/pixel-range.md)
    python bench/reproduce.py --profile unseen         # the control on a held-out model (bench/unseen_model.py)

Resumable: every finished row is appended to bench/rows/<profile>.jsonl (committed) and skipped on the
next run; generated sets are cached in bench/cache/<profile>/sets. Stop it any time and start it again.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import Rows, header, register_models, rows_file, write_doc

from dsg_core.errors import DSGError
from dsg_core.experiments import Plan, Resources, SetCache, generate_ahead, parse_bits, run
from dsg_core.generation import GenerationConfig
from dsg_core.provenance import check_versions, stamp
from dsg_core.quant import QuantConfig
from dsg_core.quant.ptq import RECONSTRUCTORS
from dsg_core.resources import resolve_device
from dsg_core.sources import REPRODUCTION

PROFILES = {
    # the protocol of issue 3
    "full": dict(models=["resnet20_mnist", "mobilenetv2_mnist"], sources=list(REPRODUCTION), seeds=10,
                 bits=["8/8", "6/6", "4/4", "3/3", "2/4"], quantizers=["minmax", "dsg-avg", "adaround", "brecq"],
                 samples=64, iterations=500, recon_iters=300, epsilons=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
    # the protocol at 200 generation and 100 reconstruction iterations: what fits in a few hours of
    # 2 shared cores plus a GPU session. Seeds 5-9 are added where results swing (SWING_STD).
    "quick": dict(models=["resnet20_mnist", "mobilenetv2_mnist"], sources=list(REPRODUCTION), seeds=5,
                  bits=["8/8", "6/6", "4/4", "3/3", "2/4"], quantizers=["minmax", "dsg-avg"],
                  recon_bits=["3/3", "4/4", "2/4", "6/6", "8/8"], recon_quantizers=["adaround", "brecq"],
                  samples=64, iterations=200, recon_iters=100, epsilons=[0.5, 0.7, 0.9, 1.0],
                  swing_seeds=10, overrides={"mobilenetv2_mnist": dict(epsilons=[])}),
    # issue 21: every synthetic set as generated (free), clamped to the valid input range afterwards
    # (no generation) and generated with clip; the cells of docs/results.md, each with range jitter.
    # Seeds come in waves (all of seeds 0-4 on both models before 5-9): partial results are useful.
    # Sized for one session on 2 shared cores (a task took ~50 s on an idle machine): 5 seeds, the three
    # cells docs/results.md argues from (W3A3 min/max, W4A4 DSG-avg, and W4A4 min/max, the grid's luck),
    # range jitter at 0.8 / 1.0 / 1.2. Seeds 5-9: `--only-seeds 5,6,7,8,9` on a longer run.
    "control": dict(models=["resnet20_mnist", "mobilenetv2_mnist"], sources=["gaussian", "zeroq", "dsg", "real"],
                    seeds=10, wave=5, bits=["3/3", "4/4"], quantizers=["minmax", "dsg-avg"],
                    cells=[["3/3", "minmax"], ["3/3", "dsg-avg"], ["4/4", "dsg-avg"], ["4/4", "minmax"],
                           ["3/3", "adaround"], ["2/4", "adaround"]],  # what reconstruction changes (issue 9)
                    pixel_ranges=["free", "clamp-after", "clip"], jitter=[0.8, 1.0, 1.2],
                    samples=64, iterations=200, recon_iters=100, epsilons=[]),
    # issue 21, item 3: the control for every other synthetic source of the reproduction (the DSG
    # ablations, ZeroQ with the reference priors, the reference objective; sda+lse+sci is `dsg`), on
    # the four range-rule cells (reconstruction is the control profile's). It shares the control's
    # cache, so its tables and correlations stand beside ZeroQ, DSG, Gaussian and real of the same seeds.
    "control-sources": dict(models=["resnet20_mnist", "mobilenetv2_mnist"],
                            sources=["gaussian", "zeroq", "zeroq+priors", "sda", "lse", "sci", "sda+lse", "dsg",
                                     "dsg-reference", "real"], cache="control",
                            seeds=10, wave=5, bits=["3/3", "4/4"], quantizers=["minmax", "dsg-avg"],
                            cells=[["3/3", "minmax"], ["3/3", "dsg-avg"], ["4/4", "dsg-avg"], ["4/4", "minmax"]],
                            pixel_ranges=["free", "clamp-after", "clip"], jitter=[0.8, 1.0, 1.2],
                            samples=64, iterations=200, recon_iters=100, epsilons=[],
                            shown_cells=[["3/3", "adaround"], ["2/4", "adaround"]]),  # control-sources-recon's
    # issue 21, item 3: the reconstruction cells of the control (W3A3 and W2A4 AdaRound) for the other
    # sources of control-sources; ZeroQ, DSG, Gaussian and real have them from the control. Its rows
    # are rendered in control-sources' page (its ``shown_cells``), beside the range-rule cells.
    "control-sources-recon": dict(models=["resnet20_mnist", "mobilenetv2_mnist"],
                                  sources=["zeroq+priors", "sda", "lse", "sci", "sda+lse", "dsg-reference"],
                                  cache="control", seeds=10, wave=5, bits=["3/3", "2/4"], quantizers=["adaround"],
                                  cells=[["3/3", "adaround"], ["2/4", "adaround"]],
                                  pixel_ranges=["free", "clamp-after", "clip"], jitter=[0.8, 1.0, 1.2],
                                  samples=64, iterations=200, recon_iters=100, epsilons=[],
                                  rendered_by="bench/reproduce.py --profile control-sources --render-only"),
    # issue 18, item 5: the control's settings on a model the project has not seen (bench/unseen_model.py,
    # a plain VGG-style CNN trained like the embedded ones, not shipped): a recipe chosen on the embedded
    # models is measured here. `setup` names the bench module whose register() adds the model first.
    "unseen": dict(models=["vgg_bn_mnist"], setup="unseen_model",
                   sources=["gaussian", "zeroq", "dsg", "dsg-reference", "real"],
                   seeds=10, wave=5, bits=["3/3", "4/4"], quantizers=["minmax", "dsg-avg"],
                   cells=[["3/3", "minmax"], ["3/3", "dsg-avg"], ["4/4", "dsg-avg"], ["4/4", "minmax"],
                          ["3/3", "adaround"], ["2/4", "adaround"]],
                   pixel_ranges=["free", "clamp-after"], jitter=[0.8, 1.0, 1.2],
                   samples=64, iterations=200, recon_iters=100, epsilons=[]),
    # issue 18, item 5: the `best` preset is dsg-reference clamped after (config.py); control-sources
    # measures it at the range-rule cells, this adds issue 18's reconstruction cells, W3A3 and W4A4
    # AdaRound, for it and for real data (the control has real's W3A3) - on the control's cache
    "best": dict(models=["resnet20_mnist", "mobilenetv2_mnist"], sources=["dsg-reference", "real"], cache="control",
                 seeds=10, wave=5, bits=["3/3", "4/4"], quantizers=["adaround"],
                 cells=[["3/3", "adaround"], ["4/4", "adaround"]], pixel_ranges=["clamp-after"],
                 jitter=[0.8, 1.0, 1.2], samples=64, iterations=200, recon_iters=100, epsilons=[],
                 rendered_by="bench/best.py"),
    # issue 18, item 5: the same for the held-out model, whose control (`unseen`) has W3A3 and W2A4 AdaRound
    "unseen-best": dict(models=["vgg_bn_mnist"], setup="unseen_model", sources=["dsg-reference", "real"],
                        cache="unseen", seeds=10, wave=5, bits=["4/4"], quantizers=["adaround"],
                        cells=[["4/4", "adaround"]], pixel_ranges=["clamp-after"], jitter=[0.8, 1.0, 1.2],
                        samples=64, iterations=200, recon_iters=100, epsilons=[], rendered_by="bench/best.py"),
    # the pixel-range control at the full profile's 500 generation steps, on the full profile's own sets
    # (``sets``: its set cache; rows of its own): what the 200-step control found, checked where the paper
    # generates (the Evidence page's section 7), and DSG's parts one at a time (the paper's ablation, with
    # range jitter). Clamping after generation needs no new set; clip would.
    "control-full": dict(models=["resnet20_mnist", "mobilenetv2_mnist"],
                         sources=["gaussian", "zeroq", "sda", "lse", "sci", "sda+lse", "dsg", "real"],
                         sets="full", seeds=10, wave=5, bits=["3/3", "4/4"], quantizers=["minmax", "dsg-avg"],
                         cells=[["3/3", "minmax"], ["3/3", "dsg-avg"], ["4/4", "dsg-avg"], ["4/4", "minmax"]],
                         pixel_ranges=["free", "clamp-after"], jitter=[0.8, 1.0, 1.2],
                         samples=64, iterations=500, recon_iters=300, epsilons=[]),
    # a check that the pipeline still gives the same rows (tests/test_reproduce_engine.py): every
    # kind of task (pixel ranges, jitter, the epsilon ablation, reconstruction) in about a minute
    "tiny": dict(models=["resnet20_mnist"], sources=["gaussian", "zeroq", "dsg", "real"], seeds=1,
                 bits=["4/4"], quantizers=["minmax", "dsg-avg"], recon_bits=["4/4"], recon_quantizers=["adaround"],
                 pixel_ranges=["free", "clamp-after", "clip"], jitter=[0.8, 1.0, 1.2],
                 samples=8, iterations=10, recon_iters=10, epsilons=[0.5]),
}
SWING_STD = 5.0  # points of top-1: a cell that spreads this much over the profile's seeds gets swing_seeds
DEFAULT_BITS, DEFAULT_QUANTIZER = "4/4", "minmax"  # the project's default view (see docs/results.md)
PAPER_TABLE3 = [("ResNet-18", "4/4", 65.22, 26.04, 39.90, 66.67), ("ResNet-18", "6/6", 71.18, 69.74, 70.46, 71.18),
                ("ResNet-18", "8/8", 71.48, 71.43, 71.49, 71.46), ("ResNet-50", "4/4", 68.13, 8.20, 56.12, 68.30),
                ("InceptionV3", "4/4", 73.50, 12.00, 57.17, 74.02), ("ShuffleNet", "6/6", 56.25, 39.92, 60.71, 61.94)]


def row_key(r: dict) -> str:
    key = {k: r[k] for k in ("kind", "model", "source", "bits", "quantizer", "seed", "epsilon")}
    return json.dumps({**key, "pixel_range": r.get("pixel_range", "free")})  # rows before issue 21: free


def for_model(profile: dict, model_name: str) -> dict:
    """The profile's settings for one model (a profile may run fewer sources or seeds on a model)."""
    return {**profile, **profile.get("overrides", {}).get(model_name, {})}


@dataclass(frozen=True)
class Task:
    """Some quantizations of one calibration set (generated on first use, then cached)."""
    model: str
    seed: int
    source: str
    epsilon: float | None
    combos: tuple[tuple[str, str], ...]  # (bits, quantizer)
    pixel_range: str = "free"  # free, clamp-after (the free set clamped) or clip (GenerationConfig.pixel_range)


def plan(profile: dict, rows: Rows, only_seeds: list[int] | None = None) -> list[Task]:
    """Every task of the profile, cheapest and most telling first: the range rules at every width,
    the epsilon ablation, then reconstruction one width at a time (the W3A3 cliff first); within
    each, the profile's seeds before extra seeds for the cells that swing (``swings``). A profile
    with ``wave`` runs its seeds in waves of that many, every model in each wave before the next."""
    plain = profile_cells(profile)
    keyed = []  # (phase, extra seed?, task)
    for model_name in profile["models"]:
        p = for_model(profile, model_name)
        base = list(only_seeds if only_seeds is not None else range(p["seeds"]))
        extra = [] if only_seeds is not None else list(range(p["seeds"], p.get("swing_seeds", 0)))
        for seed in base + extra:
            ranges = p.get("pixel_ranges", ["free"])
            tasks = sorted([(0, Task(model_name, seed, src, None, plain, pr)) for src in p["sources"] if plain
                            for pr in pixel_ranges_of(src, ranges)], key=lambda k: focus(k[1], p))
            tasks += [(1, Task(model_name, seed, "dsg", eps, ((DEFAULT_BITS, DEFAULT_QUANTIZER),)))
                      for eps in p["epsilons"]]
            tasks += [(2 + i, Task(model_name, seed, src, None, tuple((bits, q) for q in p["recon_quantizers"])))
                      for i, bits in enumerate(p.get("recon_bits", [])) for src in p["sources"]]
            if seed in extra:
                tasks = [(ph, t) for ph, t in tasks
                         if t.epsilon is None and swings(rows.rows, model_name, t.source, range(p["seeds"]), t.combos)]
            keyed += [(seed // p.get("wave", 10**9), ph, seed in extra, t) for ph, t in tasks]
    return [t[-1] for t in sorted(keyed, key=lambda k: k[:3])]  # stable: model, seed, source within


def profile_cells(profile: dict) -> tuple[tuple[str, str], ...]:
    """The profile's (bits, quantizer) cells: its ``cells``, or every bits x quantizer."""
    if "cells" in profile:
        return tuple(tuple(c) for c in profile["cells"])
    return tuple((b, q) for b in profile["bits"] for q in profile["quantizers"])


def shown_cells(profile: dict) -> tuple[tuple[str, str], ...]:
    """The cells a profile's page shows: its own, then its ``shown_cells`` (run by another profile
    on the same cache), without repeats."""
    extra = tuple(tuple(c) for c in profile.get("shown_cells", ()))
    return tuple(dict.fromkeys(profile_cells(profile) + extra))


def focus(task: Task, profile: dict) -> int:
    """0 for the profile's focus sources as generated or clamped, 1 for them clipped (a new generation),
    2 for the rest (the references); 0 for every task of a profile without a focus."""
    if task.source not in profile.get("focus", [task.source]):
        return 2
    return int(task.pixel_range == "clip")


def pixel_ranges_of(source: str, ranges: list[str]) -> list[str]:
    """The pixel ranges worth running for a source: real images are in range already, and a set that
    is not optimized (Gaussian noise) is the same clipped at the start as clamped at the end. Real
    images are run free even in a profile without "free" (the best profile: real beside clamped sets)."""
    if source == "real":
        return ["free"]
    return [r for r in ranges if r != "clip"] if source == "gaussian" and "clamp-after" in ranges else ranges


def swings(rows: list[dict], model_name: str, source: str, seeds, combos) -> bool:
    """Whether any of these (bits, quantizer) cells of the source spreads by SWING_STD points or more
    over all the seeds (cells not yet measured on all of them do not swing: a later run looks again)."""
    df = pd.DataFrame([r for r in rows if r.get("kind") == "main" and r["model"] == model_name
                       and r["source"] == source and r["seed"] in seeds and (r["bits"], r["quantizer"]) in combos])
    if not len(df):
        return False
    cells = df.groupby(["bits", "quantizer"]).top1
    complete = cells.count() == len(seeds)
    return bool((cells.std(ddof=0)[complete] >= SWING_STD).any())


def run_tasks(tasks: list[Task], profile: dict, rows: Rows, cache: SetCache, device: torch.device) -> int:
    """Run the tasks; one that fails is reported and skipped (a long run should not die of one set).
    Returns the number that failed."""
    t0, failed, models, ahead = time.time(), 0, Models(profile, device), set()
    for i, task in enumerate(tasks):
        status = ""
        try:
            if (task.model, task.seed) not in ahead:  # the sets of its model and seed: one joint pass
                ahead.add((task.model, task.seed))
                same = [t for t in tasks if (t.model, t.seed) == (task.model, task.seed)]
                generate_ahead([task_plan(t, for_model(profile, t.model)) for t in same], models.of(task.model), cache,
                               device)
            one_task(task, for_model(profile, task.model), rows, models, cache)
        except Exception:  # noqa: BLE001 - reported, counted, and the run goes on
            failed += 1
            status = "FAILED "
            traceback.print_exc()
        eps = "" if task.epsilon is None else f" eps={task.epsilon}"
        print(f"[{i + 1}/{len(tasks)}] {status}{task.model} seed {task.seed} {task.source} {task.pixel_range}"
              f"{eps} {','.join(b + ' ' + q for b, q in task.combos)}"
              f" ({time.time() - t0:.0f} s)", flush=True)
    return failed


REFERENCE_IMAGES = 512  # the first training images: the one reference every set's metrics are measured against


def task_plan(task: Task, profile: dict, combos: tuple[tuple[str, str], ...] | None = None,
              metrics: bool = True) -> Plan:
    """The engine's plan of one task: its set (source, seed, pixel range, epsilon), the profile's
    generation, reconstruction and jitter settings, and the ``combos`` (default: the task's) as its
    cells; with ``metrics``, the set diagnosed against the fixed reference (``REFERENCE_IMAGES``, the
    paper's ε band: every set on one scale), activation ranges too in a pixel-range profile."""
    gen = GenerationConfig(samples=profile["samples"], batch_size=profile["samples"],
                           iterations=profile["iterations"], pixel_range=task.pixel_range)
    if task.epsilon is not None:
        gen = gen.replace(epsilon=task.epsilon)
    cells = tuple((*parse_bits(bits)[0], q) for bits, q in (task.combos if combos is None else combos))
    return Plan(model=task.model, sources=(task.source,), seeds=(task.seed,), generation=gen,
                quant=QuantConfig(recon_iters=profile["recon_iters"]), jitter=tuple(profile.get("jitter", ())) or None,
                eval_images=profile.get("eval_images"), only_cells=cells, diagnose=metrics,
                reference_images=REFERENCE_IMAGES, diagnose_ranges=bool(profile.get("pixel_ranges")))


class Models:
    """Each model ready to run (``Resources``: the network, its test set with FP32 logits — the
    profile's ``eval_images`` first images, default all — and its pool of real images), loaded once
    for all of its tasks."""

    def __init__(self, profile: dict, device: torch.device):
        self.profile, self.device, self.loaded = profile, device, {}

    def of(self, model_name: str) -> Resources:
        if model_name not in self.loaded:
            plan = Plan(model_name, eval_images=for_model(self.profile, model_name).get("eval_images"))
            self.loaded[model_name] = Resources.load(plan, device=self.device)
        return self.loaded[model_name]


def row_fields(task: Task) -> tuple[str, dict]:
    """(kind, the key fields) of the task's result rows."""
    kind = "main" if task.epsilon is None else "epsilon"
    return kind, dict(model=task.model, source=task.source, seed=task.seed, epsilon=task.epsilon,
                      pixel_range=task.pixel_range)


def pending(task: Task, rows: Rows) -> tuple[list[tuple[str, str]], bool]:
    """(the task's (bits, quantizer) still without a row, whether its set's metrics are missing)."""
    kind, key = row_fields(task)
    todo = [(b, q) for b, q in task.combos if not rows.has(kind=kind, bits=b, quantizer=q, **key)]
    return todo, not rows.has(kind="metrics", bits=None, quantizer=None, **key)


def one_task(task: Task, profile: dict, rows: Rows, models: Models, cache: SetCache) -> None:
    """The task's missing rows from one ``run`` of its plan (the set read from ``cache``, or generated
    and cached; a clamp-after set from its free one): its set's metrics and one row per (bits, quantizer)."""
    kind, key = row_fields(task)
    todo, need_metrics = pending(task, rows)
    if not todo and not need_metrics:
        return
    res = models.of(task.model)
    result = run(task_plan(task, profile, tuple(todo), need_metrics), resources=res, cache=cache,
                 device=models.device)
    provenance = stamp({**profile, **key})
    if need_metrics:
        metrics = result.metrics.drop(columns=["set", "source", "seed"]).iloc[0].to_dict()
        rows.add({"kind": "metrics", "bits": None, "quantizer": None, **key, **metrics, **provenance})
    for r in result.results.to_dict("records"):
        add_result(rows, kind, key, r, device=models.device.type, provenance=provenance)


def add_result(rows: Rows, kind: str, key: dict, row: dict, *, device: str, provenance: dict) -> None:
    """One result row from ``run``'s (``result_row``, with its seconds): the format the renderers and
    ``bench/evidence.py`` read."""
    jitter = {"range_jitter": row["range_jitter"], "jitter_mean": row["jitter_mean"]} if "range_jitter" in row else {}
    rows.add({"kind": kind, "bits": f"{row['wbits']}/{row['abits']}", "quantizer": row["quantizer"], **key,
              "top1": row["top1"], "fp32_top1": row["fp32_top1"], "agreement": row["agreement"], "kl": row["kl"],
              **jitter, "seconds": round(row["seconds"], 2), "device": device, **provenance})


# ------------------------------------------------------------------------------------------ render
def fmt(v: pd.Series, n: int | None = None) -> str:
    """mean ± std [min, max]; the cell's own count when it has fewer seeds than its row's n."""
    if len(v) == 0:
        return "-"
    count = f" (n={len(v)})" if n is not None and len(v) != n else ""
    return f"{v.mean():.1f} ± {v.std(ddof=0):.1f} [{v.min():.1f}, {v.max():.1f}]{count}"


def render(rows: list[dict], profile_name: str, profile: dict, allow_mixed: bool = False) -> str:
    df = pd.DataFrame({row_key(r): r for r in rows}.values())  # one row per key (parallel runs may repeat one)
    out = [header(f"Reproduction table ({profile_name} profile)", timing=False), "",
           *check_versions(df.to_dict("records"), allow_mixed=allow_mixed),
           f"Settings: {json.dumps({k: v for k, v in profile.items() if k != 'sources'})}.", "",
           "Cells: top-1 % on the 1,000-image MNIST test split, mean ± std [min, max] over seeds "
           "(n = number of seeds; a cell with fewer says its own n). Sources: see `dsg_core/sources.py`.", ""]
    main = df[df.kind == "main"] if "kind" in df else df.iloc[:0]
    on_gpu = int((main.get("device", pd.Series(dtype=object)) == "cuda").sum())
    if on_gpu:
        out += [f"{on_gpu} of the {len(main)} results (and the sets they used) were computed on a GPU "
                "(`\"device\": \"cuda\"` in the rows; see `docs/gpu.md`), the rest on the CPU: both are draws of "
                "the same method, not bit-identical for a seed.", ""]
    out += coverage(df, profile, profile_name)
    machines = machine_section(main)
    if machines:
        out += [f"The results come from {main.machine.nunique()} machines (each row's `machine` stamp): a generated "
                "set is another draw of the same configuration on each, while Gaussian noise and real images are the "
                "same. Which machine computed what: the last section.", ""]
    for model_name, dm in main.groupby("model"):
        out += [f"## {model_name} (FP32 {dm.fp32_top1.iloc[0]:.2f}%)", ""]
        for qz, dq in dm.groupby("quantizer", sort=False):
            bits = [b for b in profile["bits"] + profile.get("recon_bits", []) if b in set(dq.bits)]
            bits = list(dict.fromkeys(bits))
            heads = " | ".join(f"W{b.replace('/', 'A')}" for b in bits)
            out += [f"### quantizer `{qz}`", "", f"| source | n | {heads} |", "|---|---|" + "---|" * len(bits)]
            for source in profile["sources"]:
                ds = dq[dq.source == source]
                if len(ds):
                    n = ds.seed.nunique()
                    out.append(f"| {source} | {n} | " + " | ".join(fmt(ds[ds.bits == b].top1, n) for b in bits) + " |")
            out.append("")
    eps = df[df.kind == "epsilon"] if "kind" in df else df.iloc[:0]
    if len(eps):
        out += [f"## Epsilon ablation (dsg, W{DEFAULT_BITS.replace('/', 'A')}, {DEFAULT_QUANTIZER})", "",
                "| model | epsilon | top-1 |", "|---|---|---|"]
        for (model_name, e), g in eps.groupby(["model", "epsilon"]):
            out.append(f"| {model_name} | {e} | {fmt(g.top1, for_model(profile, model_name)['seeds'])} |")
        out.append("")
    met = df[(df.kind == "metrics") & df.epsilon.isna()] if "kind" in df else df.iloc[:0]
    if len(met):  # the profile's seeds only: sources with extra seeds (where results swing) must not weigh more
        met = met[[seed < for_model(profile, m)["seeds"] for seed, m in zip(met.seed, met.model)]]
        out += metric_section(met.drop(columns=["top1"], errors="ignore"), main)
    out += machines
    out += ["## The paper's numbers, for orientation (ImageNet top-1 %, journal Table 3)", "",
            "| model | W/A | real | ZeroQ | DSG1 | DSG2 |", "|---|---|---|---|---|---|"]
    out += [f"| {m} | {b} | {r} | {z} | {d1} | {d2} |" for m, b, r, z, d1, d2 in PAPER_TABLE3]
    return "\n".join(out) + "\n"


def machine_section(main: pd.DataFrame) -> list[str]:
    """Which machine computed which results, when a profile's rows come from several: a generated set differs
    between machines (``dsg_core/provenance.py``), so a comparison is cleanest within one machine."""
    if main.get("machine", pd.Series(dtype=object)).nunique() < 2:
        return []
    out = ["## Which machine computed what", "", "| machine | model | source | quantizers | seeds | results |",
           "|---|---|---|---|---|---|"]
    for (machine, model_name, source), g in main.groupby(["machine", "model", "source"], sort=False):
        quantizers = ", ".join(dict.fromkeys(g.quantizer))
        out.append(f"| {machine} | {model_name} | {source} | {quantizers} | {fmt_seeds(g.seed)} | {len(g)} |")
    return out + [""]


def coverage(df: pd.DataFrame, profile: dict, name: str) -> list[str]:
    """A line naming what the profile asks for and no row has yet: quantizers, models, sources,
    widths, the epsilon ablation (a run stopped early or limited with --quantizers/--models/--sources/
    --bits), so a missing table or column reads as not run, not as left out."""
    main = df[df.kind == "main"] if "kind" in df else df.iloc[:0]

    def absent(column: str, wanted: list[str]) -> list[str]:
        return [v for v in dict.fromkeys(wanted) if v not in set(main.get(column, ()))]

    eps_wanted = any(for_model(profile, m)["epsilons"] for m in profile["models"])
    named = {"quantizers": absent("quantizer", profile["quantizers"] + profile.get("recon_quantizers", [])),
             "models": absent("model", profile["models"]), "sources": absent("source", profile["sources"]),
             "widths": absent("bits", profile["bits"] + profile.get("recon_bits", []))}
    parts = [f"{what} {', '.join(f'`{v}`' for v in values)}" for what, values in named.items() if values]
    eps = df[df.kind == "epsilon"] if "kind" in df else df.iloc[:0]
    if eps_wanted and not len(eps):
        parts.append("the epsilon ablation")
    for m in profile["models"] if len(eps) else ():  # a part of the ablation ran: which seeds did not
        p = for_model(profile, m)
        seeds = set(range(p["seeds"])) - set(eps[eps.model == m].seed) if p["epsilons"] else set()
        if seeds:
            parts.append(f"the epsilon ablation's seeds {fmt_seeds(pd.Series(sorted(seeds)))} on `{m}`")
    if not parts:
        return []
    said = "; ".join(parts)
    return [f"**Not run yet on this code:** {said} (`python bench/reproduce.py --profile {name}` resumes).", ""]


METRICS = ("mean_cosine_similarity", "feature_cosine_similarity", "effective_rank", "feature_effective_rank",
           "stat_spread_ratio", "std_spread_ratio", "frechet_distance", "precision", "recall", "class_entropy",
           "in_band_fraction")
CORRELATION_BITS = (DEFAULT_BITS, "3/3")  # the default view, and the cliff


def metric_section(met: pd.DataFrame, main: pd.DataFrame) -> list[str]:
    """Per model: Spearman rho between each diversity metric of a synthetic set and the min/max top-1
    it gives at the default bits and at W3A3; and the mean metrics per source."""
    out = []
    for model_name, mm in met[met.source != "real"].groupby("model"):
        cols = [c for c in METRICS if c in mm and mm[c].notna().any()]
        accs = {b: main[(main.model == model_name) & (main.bits == b) & (main.quantizer == DEFAULT_QUANTIZER)]
                for b in CORRELATION_BITS}
        joined = {b: mm.merge(a[["source", "seed", "top1"]], on=["source", "seed"]) for b, a in accs.items()}
        heads = [f"W{b.replace('/', 'A')} (n={len(j)})" for b, j in joined.items()]
        out += [f"## Which diversity metric predicts accuracy? ({model_name}, synthetic sets, {DEFAULT_QUANTIZER})", "",
                "Spearman rank correlation between each metric of a set and the top-1 it gives (n = sets, "
                "the profile's seeds of every synthetic source).", "",
                "| metric | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
        for c in cols:
            rhos = [j[[c, "top1"]].corr(method="spearman").iloc[0, 1] if len(j) > 2 else float("nan")
                    for j in joined.values()]
            out.append(f"| {c} | " + " | ".join(f"{r:+.2f}" for r in rhos) + " |")
        mean = mm.groupby("source")[cols].mean()
        for b, j in joined.items():
            mean[f"top1 W{b.replace('/', 'A')}"] = j.groupby("source").top1.mean()
        out += ["", "Mean metrics per source:", "", md_table(mean), ""]
    return out


# ------------------------------------------------------------------------ render: the pixel-range control
PIXEL_NAMES = {"free": "as generated", "clamp-after": "clamped after", "clip": "clipped every step"}
PIXEL_METRICS = ("out_of_range_fraction", "max_excursion", "images_out_of_range")
RANGE_METRICS = (*PIXEL_METRICS, "range_ratio", "max_layer_ratio")
MIN_RHO_POINTS = 8  # no rank correlation from fewer sets


def frame(rows: list[dict]) -> pd.DataFrame:
    """One row per key (parallel runs may repeat one), with pixel_range filled in for older rows."""
    df = pd.DataFrame({row_key(r): r for r in rows}.values())
    if "pixel_range" not in df:
        df["pixel_range"] = "free"
    return df.fillna({"pixel_range": "free"})


def render_control(rows: list[dict], profile_name: str, profile: dict, allow_mixed: bool = False) -> str:
    df = frame(rows)
    df = df[df.source.isin(profile["sources"])]  # profiles may share a cache (control-sources)
    mixed = check_versions(df.to_dict("records"), allow_mixed=allow_mixed)
    main, met = df[df.kind == "main"], df[df.kind == "metrics"]
    factors = ", ".join(f"{f:g}" for f in profile["jitter"])
    out = [header("Diversity or pixel range? The pixel-range control (issue 21)", timing=False), "",
           *mixed,
           f"Settings ({profile_name} profile): {json.dumps({k: v for k, v in profile.items() if k != 'sources'})}.",
           "", f"The rows come from `python bench/reproduce.py --profile {profile_name}` (resumable; `--shard i/n` "
           f"splits it over processes): {len(main)} results and {len(met)} sets' metrics. What they mean: "
           "`docs/results.md`, first section.", "",
           pixel_ways(profile["pixel_ranges"]),
           "",
           "Cells: top-1 % on the 1,000-image MNIST test split, mean ± std [min, max] over seeds (n seeds; a "
           f"cell with fewer says its own n). **Jitter mean**: top-1 averaged over every calibrated activation "
           f"range scaled by {factors} (`dsg_core/quant/jitter.py`; `docs/aliasing.md`): a difference that "
           "survives it is the data's, not the grid's luck.", ""]
    for model_name, dm in main.groupby("model", sort=False):
        if len(profile["sources"]) > 4:
            cells = shown_cells(profile)
            out += control_summary_section(model_name, dm, profile, [c for c in cells if c[1] not in RECONSTRUCTORS],
                                           "range rules")
            out += control_summary_section(model_name, dm, profile, [c for c in cells if c[1] in RECONSTRUCTORS],
                                           "reconstruction", "top1")
        out += control_model_section(model_name, dm, profile)
        mm = met[met.model == model_name]
        if len(mm):
            out += control_metric_section(model_name, mm, dm, profile["sources"])
    return "\n".join(out) + "\n"


PIXEL_WAYS = {"free": "**as generated** (free, unbounded pixels: the paper and `docs/results.md`)",
              "clamp-after": "**clamped after** (the same set, every pixel clamped to the model's valid input range "
                             "`ModelSpec.valid_range`, no new generation)",
              "clip": "**clipped every step** (generated with `--pixel-range clip`: projected onto the range after "
                      "every Adam step)"}


def pixel_ways(ranges: list[str]) -> str:
    """The page's sentence on how the synthetic sets were handled: the profile's pixel ranges, and what it lacks."""
    ways = [PIXEL_WAYS[r] for r in ranges]
    count = ("one way", "two ways", "three ways")[len(ways) - 1]
    said = f"Every synthetic set {count}: " + ", ".join(ways[:-1]) + (" and " if len(ways) > 1 else "") + ways[-1] + "."
    if "clip" in ranges:
        said += " Gaussian noise is not optimized, so clipping it is clamping it: it has no separate clip row."
    else:
        said += " Clipping every step needs a new generation of every set; this profile did not run it."
    return said + " Real images are in range."


def control_model_section(model_name: str, dm: pd.DataFrame, profile: dict) -> list[str]:
    n = dm.seed.nunique()
    out = [f"## {model_name} (FP32 {dm.fp32_top1.iloc[0]:.2f}%, seeds {fmt_seeds(dm.seed)})", ""]
    for bits, qz in shown_cells(profile):
        dc = dm[(dm.bits == bits) & (dm.quantizer == qz)]
        if not len(dc):
            continue
        out += [f"### W{bits.replace('/', 'A')} `{qz}`", "", "| source | pixels | top-1 | jitter mean |",
                "|---|---|---|---|"]
        for source in profile["sources"]:
            for pr in pixel_ranges_of(source, profile["pixel_ranges"]):
                g = dc[(dc.source == source) & (dc.pixel_range == pr)]
                if len(g):
                    out.append(f"| {source} | {PIXEL_NAMES[pr]} | {fmt(g.top1, n)} | {fmt(g.jitter_mean, n)} |")
        out.append("")
    for source in [s for s in profile["sources"] if s not in ("zeroq", "real", "gaussian")]:
        out += gap_section(model_name, dm, profile, source)
    return out


def gap_section(model_name: str, dm: pd.DataFrame, profile: dict, source: str) -> list[str]:
    """The source's set minus ZeroQ's of the same seed and pixel handling, per cell."""
    name = "DSG" if source == "dsg" else source
    out = [f"### {name} minus ZeroQ, seed by seed ({model_name})", "",
           f"Top-1 points of {name}'s set minus ZeroQ's set of the same seed and pixel handling: mean ± std over "
           f"the seeds both have, and on how many of them {name} is ahead.", "",
           f"| cell | pixels | top-1: {name} - ZeroQ | {name} ahead | jitter mean: {name} - ZeroQ | {name} ahead |",
           "|---|---|---|---|---|---|"]
    for bits, qz in shown_cells(profile):
        for pr in profile["pixel_ranges"]:
            gap = paired_gap(dm[(dm.bits == bits) & (dm.quantizer == qz) & (dm.pixel_range == pr)], source)
            if gap is not None:
                cell = f"W{bits.replace('/', 'A')} {qz}"
                out.append(f"| {cell} | {PIXEL_NAMES[pr]} | {gap['top1']} | {gap['top1_ahead']} "
                           f"| {gap['jitter_mean']} | {gap['jitter_mean_ahead']} |")
    return out + [""]


SUMMARY_VALUES = {  # what a summary averages: the jitter mean for the range rules; top-1 for reconstruction,
    # whose rounding is learned at the calibrated ranges (scaling them afterwards is another question:
    # the per-cell tables give its jitter mean too)
    "jitter_mean": ("jitter mean", "Jitter mean (top-1 averaged over the calibrated ranges scaled by {factors})"),
    "top1": ("top-1", "Top-1 at the calibrated ranges (AdaRound learns its rounding at those ranges; the per-cell "
                      "tables below also give the jitter mean, over ranges scaled by {factors}, after learning)"),
}


def control_summary_section(model_name: str, dm: pd.DataFrame, profile: dict, cells, title: str,
                            value: str = "jitter_mean") -> list[str]:
    """Every source and pixel handling on one line, ``value`` at each of ``cells`` (mean ± std over
    seeds) and its average over the cells: which recipe holds up once the pixel range is controlled."""
    cells = [tuple(c) for c in cells if ((dm.bits == c[0]) & (dm.quantizer == c[1])).any()]
    if not cells:
        return []
    names = [f"W{b.replace('/', 'A')} {q}" for b, q in cells]
    short, intro = SUMMARY_VALUES[value]
    factors = ", ".join(f"{f:g}" for f in profile["jitter"])
    out = [f"## Every source at a glance: {title} ({model_name}, {short}, seeds {fmt_seeds(dm.seed)})", "",
           intro.format(factors=factors) + ", mean ± std over seeds; **mean of cells** averages the cells of each "
           "seed first. n: the seeds a row has.", "",
           "| source | pixels | n | " + " | ".join(names) + " | mean of cells |",
           "|---|---|---|" + "---|" * (len(names) + 1)]
    for source in profile["sources"]:
        for pr in pixel_ranges_of(source, profile["pixel_ranges"]):
            g = dm[(dm.source == source) & (dm.pixel_range == pr)]
            g = g[[(b, q) in cells for b, q in zip(g.bits, g.quantizer)]]  # n: the seeds of these cells
            if not len(g):
                continue
            per = [g[(g.bits == b) & (g.quantizer == q)][value] for b, q in cells]
            wide = g.pivot_table(index="seed", columns=["bits", "quantizer"], values=value)
            whole = wide[cells].dropna().mean(axis=1) if set(cells) <= set(wide.columns) else pd.Series(dtype=float)
            out.append(f"| {source} | {PIXEL_NAMES[pr]} | {g.seed.nunique()} | "
                       + " | ".join(f"{v.mean():.1f} ± {v.std(ddof=0):.1f}" if len(v) else "-" for v in per)
                       + f" | {f'{whole.mean():.1f} ± {whole.std(ddof=0):.1f}' if len(whole) else '-'} |")
    return out + [""]


def fmt_seeds(seeds: pd.Series) -> str:
    s = sorted(set(int(v) for v in seeds))
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


def paired_gap(dc: pd.DataFrame, source: str = "dsg") -> dict | None:
    """source - ZeroQ per seed, for top-1 and the jitter mean (None without a seed that has both)."""
    wide = dc.pivot_table(index="seed", columns="source", values=["top1", "jitter_mean"])
    if not {("top1", source), ("top1", "zeroq")} <= set(wide.columns):
        return None
    out = {}
    for col in ("top1", "jitter_mean"):
        d = (wide[(col, source)] - wide[(col, "zeroq")]).dropna()
        out[col] = f"{d.mean():+.1f} ± {d.std(ddof=0):.1f} (n={len(d)})"
        out[f"{col}_ahead"] = f"{int((d > 0).sum())} of {len(d)}"
    return out


def control_metric_section(model_name: str, mm: pd.DataFrame, dm: pd.DataFrame, sources: list[str]) -> list[str]:
    """Mean metrics per source and pixel handling, and Spearman rho between each metric of a synthetic
    set and the min/max accuracy it gives: over all sets, over the sets inside the valid range only, and
    over all sets with the out-of-range fraction partialled out."""
    syn = mm[mm.source != "real"]
    targets = {}
    for bits in CORRELATION_BITS:
        acc = dm[(dm.bits == bits) & (dm.quantizer == DEFAULT_QUANTIZER)]
        for col, name in (("top1", "top-1"), ("jitter_mean", "jitter mean")):
            targets[f"W{bits.replace('/', 'A')} {name}"] = acc[["source", "pixel_range", "seed", col]].rename(
                columns={col: "y"})
    cols = [c for c in (*METRICS, *RANGE_METRICS) if c in mm and mm[c].notna().any()]
    order = {(src, pr): i for i, (src, pr) in enumerate((src, pr) for src in sources for pr in PIXEL_NAMES)}
    mm = mm.assign(order=[order.get(k, len(order)) for k in zip(mm.source, mm.pixel_range)]).sort_values("order")
    mean = mm.assign(set=mm.source + " / " + mm.pixel_range.map(PIXEL_NAMES)).groupby("set", sort=False)[cols].mean()
    out = [f"## Diversity metrics with the pixel range controlled ({model_name})", "",
           "Mean over seeds of each metric per source and pixel handling (out_of_range_fraction: pixels outside "
           "the valid range; max_excursion: the largest, in normalized units beyond the bound; range_ratio: "
           "the min/max activation ranges the set calibrates over real data's, geometric mean over layers; "
           "max_layer_ratio: the largest layer's).", "", md_table(mean.T.rename_axis("metric")), ""]
    blocks = [("all synthetic sets", syn, None),
              ("sets inside the valid range only (clamped after, clipped, and clamped noise)",
               syn[syn.out_of_range_fraction == 0], None),
              ("all synthetic sets, out-of-range fraction partialled out (partial Spearman)", syn,
               "out_of_range_fraction")]
    for title, sets, covariate in blocks:
        joined = {name: sets.merge(t, on=["source", "pixel_range", "seed"]) for name, t in targets.items()}
        out += [f"### Spearman rho, {title}: metric vs `{DEFAULT_QUANTIZER}` accuracy", "",
                "| metric | " + " | ".join(f"{name} (n={len(j)})" for name, j in joined.items()) + " |",
                "|---|" + "---|" * len(joined)]
        for c in cols:
            if title != blocks[0][0] and c in PIXEL_METRICS:
                continue  # constant inside the range, or the covariate itself
            rhos = [spearman(j[c], j.y, j[covariate] if covariate else None) for j in joined.values()]
            out.append(f"| {c} | " + " | ".join("-" if pd.isna(r) else f"{r:+.2f}" for r in rhos) + " |")
        out.append("")
    out += [f"(\"-\": fewer than {MIN_RHO_POINTS} sets, or a metric constant over them.)", ""]
    return out


def spearman(x: pd.Series, y: pd.Series, z: pd.Series | None = None) -> float:
    """Spearman rho of x and y; with z, the partial rank correlation (ranks of x and y, each with its
    linear fit on the ranks of z removed). NaN from fewer than MIN_RHO_POINTS points."""
    ok = x.notna() & y.notna() & (z.notna() if z is not None else True)
    if ok.sum() < MIN_RHO_POINTS:
        return float("nan")
    rx, ry = x[ok].rank().to_numpy(float), y[ok].rank().to_numpy(float)
    if z is not None:
        design = np.column_stack([np.ones(len(rx)), z[ok].rank().to_numpy(float)])
        rx = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
        ry = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


ROW_FIELDS = ("kind", "model", "source", "pixel_range", "seed", "bits", "quantizer", "top1", "jitter_mean")


def control_rows(rows: list[dict]) -> str:
    """The rows as compact JSON lines for the dashboard's evidence page: the key fields, top-1 and the
    jitter mean of a result, the metric values of a set (floats to 4 significant digits)."""
    keep = set(ROW_FIELDS) | set(METRICS) | set(RANGE_METRICS)
    lines = []
    for r in frame(rows).to_dict("records"):
        if r["kind"] not in ("main", "metrics"):
            continue
        fields = set(ROW_FIELDS) if r["kind"] == "main" else keep - {"bits", "quantizer", "top1", "jitter_mean"}
        row = {k: r.get(k) for k in ROW_FIELDS if k in fields}
        row.update({k: r[k] for k in sorted(fields - set(ROW_FIELDS)) if k in r})
        lines.append(json.dumps({k: round_sig(v) for k, v in row.items()}))
    return "\n".join(lines) + "\n"


def round_sig(v):
    if isinstance(v, float):
        return None if math.isnan(v) else float(f"{v:.4g}")
    return v


def md_table(df: pd.DataFrame) -> str:
    cols = [df.index.name or ""] + list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join([str(i)] + [f"{v:.3g}" for v in row]) + " |" for i, row in zip(df.index, df.values)]
    return "\n".join(lines)


def restrict(profile: dict, models: str | None = None, sources: str | None = None, bits: str | None = None,
             quantizers: str | None = None, pixel_ranges: str | None = None, only_epsilons: bool = False) -> dict:
    """The profile on some of its models, bit-widths, quantizers or pixel handlings, on some sources
    without the epsilon ablation, or on the epsilon ablation alone: a part of a long protocol that fits
    the time at hand."""
    recon_q = profile.get("recon_quantizers", [])
    ranges = profile.get("pixel_ranges", ["free"])
    for given, known in ((models, profile["models"]), (sources, profile["sources"]),
                         (bits, profile["bits"]), (quantizers, profile["quantizers"] + recon_q),
                         (pixel_ranges, ranges)):
        unknown = set(given.split(",")) - set(known) if given else set()
        if unknown:
            raise SystemExit(f"not in the profile: {', '.join(sorted(unknown))} (it has {', '.join(known)})")
    only = lambda names, given: [s for s in names if s in given.split(",")] if given else names
    profile = {**profile, "models": only(profile["models"], models), "bits": only(profile["bits"], bits),
               "quantizers": only(profile["quantizers"], quantizers)}
    if pixel_ranges and "pixel_ranges" in profile:  # a profile without them generates as the paper does
        profile["pixel_ranges"] = only(ranges, pixel_ranges)
    if "recon_bits" in profile:
        profile.update(recon_bits=only(profile["recon_bits"], bits), recon_quantizers=only(recon_q, quantizers))
    if sources:
        profile = {**profile, "sources": only(profile["sources"], sources),
                   "overrides": {m: {**o, "sources": only(o.get("sources", profile["sources"]), sources)}
                                 for m, o in profile.get("overrides", {}).items()}}
    if only_epsilons:  # no source's own cells: the ablation's tasks are DSG's at each epsilon
        if sources:
            raise SystemExit("--only-epsilons runs DSG's sets at each epsilon: give no --sources")
        return {**profile, "sources": [], "overrides": {m: {**o, "sources": []}
                                                         for m, o in profile.get("overrides", {}).items()}}
    if sources or DEFAULT_BITS not in profile["bits"] or DEFAULT_QUANTIZER not in profile["quantizers"]:
        profile = {**profile, "epsilons": [],  # the ablation runs at the default cell, on DSG's own sets
                   "overrides": {m: {**o, "epsilons": []} for m, o in profile.get("overrides", {}).items()}}
    return profile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="full")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--only-seeds", help="comma-separated seeds to run, on every model run (to split the work "
                                         "over processes, or to add seeds beyond the profile's where results swing)")
    p.add_argument("--models", help="comma-separated models of the profile to run (default: all of them)")
    p.add_argument("--sources", help="comma-separated sources to run, without the epsilon ablation "
                                     "(e.g. more seeds where results swing)")
    p.add_argument("--out", default=None, help="markdown file under docs/ (default results-<profile>.md)")
    p.add_argument("--bits", help="comma-separated W/A widths of the profile to run, e.g. 4/4,3/3")
    p.add_argument("--quantizers", help="comma-separated quantizers of the profile to run, e.g. minmax,dsg-avg")
    p.add_argument("--only-epsilons", action="store_true", help="run the epsilon ablation only (DSG at each epsilon)")
    p.add_argument("--pixel-ranges", help="comma-separated pixel handlings of the profile to run, e.g. free")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where sets are generated and quantized")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th task from the i-th (parallel processes)")
    p.add_argument("--list", action="store_true", help="print the tasks still to run and stop")
    p.add_argument("--allow-mixed", action="store_true",
                   help="render rows of several code versions together (the document lists them)")
    args = p.parse_args()
    torch.manual_seed(0)
    profile = PROFILES[args.profile]
    setup(profile)
    root = Path(__file__).resolve().parent / "cache" / profile.get("sets", profile.get("cache", args.profile))
    rows = Rows(rows_file(profile.get("cache", args.profile)), row_key)
    if not args.render_only:
        i, n = (int(v) for v in args.shard.split("/"))
        only = [int(v) for v in args.only_seeds.split(",")] if args.only_seeds else None
        sub = restrict(profile, args.models, args.sources, args.bits, args.quantizers, args.pixel_ranges,
                       args.only_epsilons)
        if not 0 <= i < n:
            raise SystemExit(f"--shard {args.shard}: need 0 <= i < n")
        tasks = [t for t in plan(sub, rows, only) if in_shard(t, i, n) and not done(t, rows)]
        print(f"{len(tasks)} tasks to run (shard {args.shard})", flush=True)
        if args.list:
            print("\n".join(map(str, tasks)))
            return
        failed = run_tasks(tasks, sub, rows, SetCache(root / "sets"), resolve_device(args.device))
        if failed:
            raise SystemExit(f"{failed} task(s) failed (tracebacks above)")
        if n > 1:
            return  # the other shards are still running: render once they are done (--render-only)
    rows.refresh()
    if "rendered_by" in profile:  # rows for another page: render that one
        print(f"{len(rows.rows)} rows in {rows.path}; {profile['rendered_by']} renders them")
        return
    if "pixel_ranges" in profile:
        write_doc(args.out or control_doc(args.profile), render_control(rows.rows, args.profile, profile,
                                                                           args.allow_mixed))
        write_doc(f"data/{args.profile}-rows.jsonl",
                  control_rows([r for r in rows.rows if r["source"] in profile["sources"]]))  # a shared cache
        return
    write_doc(args.out or f"results-{args.profile}.md",
              render(rows.rows, args.profile, PROFILES[args.profile], args.allow_mixed))


def setup(profile: dict) -> None:
    """Register the models a profile's ``setup`` module adds (the held-out model of ``unseen``);
    registering again is harmless."""
    register_models(profile.get("setup"))


def control_doc(profile_name: str) -> str:
    """The document of a pixel-range profile: pixel-range.md for ``control``, else pixel-range-<name>.md
    without a leading ``control-`` (control-sources -> pixel-range-sources.md, unseen -> pixel-range-unseen.md)."""
    return "pixel-range.md" if profile_name == "control" else f"pixel-range-{profile_name.removeprefix('control-')}.md"


def in_shard(task: Task, i: int, n: int) -> bool:
    """A stable split: a task's shard depends on the task alone, not on what other shards have
    finished by the time this one starts (a list index would shift and lose tasks)."""
    return zlib.crc32(repr(task).encode()) % n == i


def done(task: Task, rows: Rows) -> bool:
    todo, need_metrics = pending(task, rows)
    return not todo and not need_metrics


if __name__ == "__main__":
    try:
        main()
    except DSGError as exc:  # e.g. rows of several code versions rendered without --allow-mixed
        raise SystemExit(f"error: {exc}") from None
