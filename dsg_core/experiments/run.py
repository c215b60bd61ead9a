"""``run(plan)``: generate every calibration set, diagnose them, quantize with each, evaluate, save.

The one pipeline behind the dashboard's Run and ε ablation, ``python -m dsg_core compare``,
background jobs and ``bench/reproduce.py``. Independent sets are generated (and quantized)
``plan.workers`` at a time on threads, each task on its own copy of the model, because generation and
calibration hook into the network.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import partial

import pandas as pd
import torch
import torch.nn as nn

from .. import provenance
from ..data import real_split
from ..data.folder import load_image_folder
from ..diagnostics import REAL, Diagnosis, activation_ranges, diagnose, range_ratios
from ..errors import DSGError
from ..evaluate import evaluate_quantized
from ..generation import GenerationConfig, Margins, SyntheticSet
from ..logit_cache import fp32_logits
from ..models import ModelSpec, get_spec, load_model
from ..progress import CancelFn, Progress, ProgressFn
from ..quant import QuantConfig, quantize_model
from ..runstore import RunStore
from ..sources import label
from .parallel import in_parallel
from .plan import Plan
from .sets import SetCache, generated_sets, real_calibration


# ------------------------------------------------------------------------------------ what is needed
@dataclass(frozen=True)
class TestSet:
    """The evaluation images with the FP32 model's logits, computed once (and kept on disk, see
    ``logit_cache.py``) instead of once per quantized model."""
    x: torch.Tensor
    y: torch.Tensor | None
    fp_logits: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> "TestSet":
        return cls(x, y, fp32_logits(model, x))


@dataclass(frozen=True)
class Resources:
    """A model ready to run: its spec, the network, its test images and its pool of real images."""
    spec: ModelSpec
    model: nn.Module
    test: TestSet
    pool: torch.Tensor

    @classmethod
    def load(cls, plan: Plan, device="cpu") -> "Resources":
        spec = get_spec(plan.model)
        model = load_model(plan.model, weights=plan.weights, device=device)
        if plan.test_dir:  # a user's labelled folder serves as test set and calibration pool
            test_x, test_y = load_image_folder(plan.test_dir, spec)
            pool = test_x
        else:
            (test_x, test_y), pool = real_split(plan.model, "test"), real_split(plan.model, "train")[0]
        return cls.of(spec, model, test_x, test_y, pool, plan.eval_images, device)

    @classmethod
    def of(cls, spec: ModelSpec, model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor | None,
           pool: torch.Tensor, eval_images: int | None = None, device="cpu") -> "Resources":
        x, y = test_x[:eval_images], (test_y[:eval_images] if test_y is not None else None)
        x, y = x.to(device), (y.to(device) if y is not None else None)
        return cls(spec, model, TestSet.of(model, x, y), pool)


def quantize_and_evaluate(model: nn.Module, calib: torch.Tensor, qcfg: QuantConfig, test: TestSet, *,
                          progress: ProgressFn = None, cancel: CancelFn = None,
                          jitter: tuple[float, ...] | None = None) -> dict:
    """The metrics of ``evaluate_quantized``; with ``jitter`` factors, also top-1 with every activation
    range scaled by each (``quant/jitter.py``: how much of the result is the grid's luck). Factor 1
    is the calibrated result itself: its top-1 is ``quant_top1``, not evaluated again."""
    q = quantize_model(model, calib, qcfg, progress, cancel)
    res = evaluate_quantized(model, q, test.x, test.y, fp_logits=test.fp_logits)
    if jitter:
        from ..quant.jitter import range_jitter
        # factor 1 is the evaluation just made: a third fewer passes at the default 0.8/1/1.2
        known = {1.0: res["quant_top1"]} if test.y is not None else None
        accs = range_jitter(model, q, test.x, test.y, tuple(jitter), known=known)
        res["range_jitter"] = {f"{f:g}": v for f, v in accs.items()}
        res["range_jitter_mean"] = sum(accs.values()) / len(accs)
        res["range_jitter_spread"] = max(accs.values()) - min(accs.values())
    return res


# ------------------------------------------------------------------------------------------ result
@dataclass
class RunResult:
    """Everything a run made; the dashboard's views draw it and the run store keeps it."""
    plan: Plan
    sets: dict[tuple[str, int], SyntheticSet | None]   # (source, seed) -> set (None for real data)
    calib: dict[tuple[str, int], torch.Tensor]          # (source, seed) -> calibration images
    diagnosis: Diagnosis | None                         # of the first seed, keyed by display label
    metrics: pd.DataFrame                               # one row per set and seed
    results: pd.DataFrame                               # one row per set, seed, bit-width and quantizer
    seconds: float = 0.0
    run_id: int | None = None
    saved_note: str = ""                                # where the run went when not to the store asked for
    extras: dict = field(default_factory=dict)          # views' add-ons, e.g. the generator's snapshots
    provenance: dict = field(default_factory=dict)      # code version and plan hash (``provenance.stamp``)

    @property
    def model(self) -> nn.Module | None:
        return self.diagnosis.model if self.diagnosis else None

    def first_seed_sets(self) -> dict[str, torch.Tensor]:
        """Display label -> images of the first seed, in the plan's source order."""
        s0 = self.plan.seeds[0]
        return {label(src): self.calib[(src, s0)] for src in self.plan.sources if (src, s0) in self.calib}


def task_names(plan: Plan) -> list[str]:
    """The stages of a run in order, as progress reports them (``Progress.extra["task"]`` indexes this)."""
    gen = [f"Generate {label(src)} (seed {seed})" for src, seed in plan.generated]
    diag = ["Diagnose diversity"] if plan.diagnose else []
    quant = [f"Quantize with {label(src)} (seed {seed})" for src, seed in plan.calibrations]
    return gen + diag + quant + ["Save"]


# ------------------------------------------------------------------------------------------ the run
def run(plan: Plan, *, progress: ProgressFn = None, cancel: CancelFn = None, store: RunStore | None = None,
        resources: Resources | None = None, cache: SetCache | None = None, device="cpu") -> RunResult:
    """Generate, diagnose, quantize and evaluate every cell of ``plan``; save to ``store`` if given.

    Raises DSGError (``Cancelled`` included) with nothing saved. ``resources`` skips loading the
    model and data (the dashboard keeps them loaded); ``cache`` reuses generated sets on disk.
    """
    t0 = time.perf_counter()
    plan = plan.validate()
    res = resources or Resources.load(plan, device)
    report = _Reporter(progress, task_names(plan))
    snapshots: dict = {}
    sets = _generate(plan, res, report, cancel, cache, device, snapshots)
    calib = {key: s.images for key, s in sets.items()}
    for seed in plan.seeds if "real" in plan.sources or plan.diagnose else ():  # diagnosis measures against it
        calib[("real", seed)] = real_calibration(plan.model, plan.generation.samples, seed, pool=res.pool)
        sets[("real", seed)] = None
    diagnosis, metrics = None, pd.DataFrame()
    if plan.diagnose:
        with report.task(len(plan.generated)):
            diagnosis, metrics = _diagnose(plan, res, calib, sets)
    first_quant = len(plan.generated) + plan.diagnose
    tasks = [partial(_quantize_rows, plan, res, src, seed, calib[(src, seed)], report.sub(first_quant + i), cancel)
             for i, (src, seed) in enumerate(plan.calibrations)]
    stamp = provenance.stamp(plan.to_dict())
    rows = [{**row, **stamp} for chunk in in_parallel(tasks, plan.workers) for row in chunk]
    result = RunResult(plan, {k: sets[k] for k in plan.calibrations}, {k: calib[k] for k in plan.calibrations},
                       diagnosis, metrics, pd.DataFrame(rows), seconds=round(time.perf_counter() - t0, 2),
                       extras={"snapshots": snapshots} if snapshots else {}, provenance=stamp)
    if store is not None:
        with report.task(len(report.names) - 1):
            result.run_id, result.saved_note = save(store, result)
    return result


def _generate(plan: Plan, res: Resources, report: "_Reporter", cancel: CancelFn, cache: SetCache | None,
              device, snapshots: dict) -> dict[tuple[str, int], SyntheticSet]:
    """Every generated set of the plan, made together (``generated_sets``); with ``plan.snapshots``,
    seed 0's BN-matched sets are made afresh and their snapshots land in ``snapshots``."""
    size = res.spec.input_shape[-1]
    cfgs = {key: plan.source_config(*key, size) for key in plan.generated}
    fresh = {k for k, c in cfgs.items() if plan.snapshots and k[1] == plan.seeds[0] and c.uses_bn}
    tasks = {key: k for k, key in enumerate(plan.generated)}
    sets = generated_sets(_private(res.model), res.spec, cfgs, cache=cache, fresh=fresh, cancel=cancel,
                          device=device, snapshot_every=plan.snapshots, workers=plan.workers,
                          progress=_sets_progress(report, tasks, snapshots, plan.seeds[0]))
    for key in plan.generated:
        report.done(tasks[key])
    return sets


def generate_ahead(plans: list[Plan], resources: Resources, cache: SetCache, device="cpu") -> None:
    """Every set of ``plans`` (of one model) into ``cache`` in one joint pass (``generated_sets``), so
    that each plan's ``run`` reads its sets: plans that differ in generation settings (pixel range, ε),
    which no single plan holds, still share one pass; sets already cached are not made again."""
    size = resources.spec.input_shape[-1]
    cfgs = {(k, key): plan.source_config(*key, size) for k, plan in enumerate(plans) for key in plan.generated}
    generated_sets(_private(resources.model), resources.spec, cfgs, cache=cache, device=device)


def _sets_progress(report: "_Reporter", tasks: dict, snapshots: dict, first_seed: int) -> ProgressFn:
    """The joint pass's progress as each set's own task (its loss, the pass's step), keeping the
    snapshots of the first seed's sets."""
    def on(p: Progress) -> None:
        keys = p.extra["keys"]
        for index, snap in p.extra.get("snapshots", {}).items():
            for key in keys[index]:
                if key[1] == first_seed:
                    snapshots.setdefault(key, []).append(snap)
        for index, loss in zip(p.extra.get("sets", []), p.extra.get("set_loss", [])):
            for key in keys[index]:
                sub = report.sub(tasks[key])
                if sub is not None:
                    sub(Progress("generate", min(p.step, p.total - 1), p.total, loss))
    return on


def _quantize_rows(plan: Plan, res: Resources, source: str, seed: int, images: torch.Tensor, progress: ProgressFn,
                   cancel: CancelFn) -> list[dict]:
    """Quantize at every cell with one calibration set; one result row each."""
    rows, cells, model = [], plan.cells, _private(res.model)
    for k, (w, a, qz) in enumerate(cells):
        t = time.perf_counter()
        out = quantize_and_evaluate(model, images, plan.quant_config(w, a, qz, seed), res.test, cancel=cancel,
                                    jitter=plan.jitter)
        rows.append({**result_row(plan.model, source, seed, w, a, qz, out),
                     "seconds": round(time.perf_counter() - t, 2)})  # quantization and evaluation
        if progress is not None:
            progress(Progress("quantize", k + 1, len(cells)))
    return rows


def result_row(model: str, source: str, seed: int, wbits: int, abits: int, quantizer: str, out: dict) -> dict:
    """One quantization result as every table of the project stores it."""
    row = {"model": model, "set": label(source), "source": source, "seed": seed, "wbits": wbits, "abits": abits,
           "bits": f"W{wbits}A{abits}", "quantizer": quantizer, "top1": out["quant_top1"],
           "fp32_top1": out["fp32_top1"], "agreement": out["agreement"], "kl": out["kl"]}
    if "range_jitter" in out:  # top-1 at each factor, and their mean and spread
        row["range_jitter"] = out["range_jitter"]
        row["jitter_mean"], row["jitter_spread"] = out["range_jitter_mean"], out["range_jitter_spread"]
    return row


def _diagnose(plan: Plan, res: Resources, calib: dict, sets: dict) -> tuple[Diagnosis, pd.DataFrame]:
    """``diagnose_sets`` as the plan asks: against each seed's real images, or the pool's first
    ``reference_images``; with activation ranges when ``diagnose_ranges``."""
    reference = res.pool[:plan.reference_images] if plan.reference_images else None
    return diagnose_sets(_private(res.model), res.spec, plan, calib, sets, reference=reference,
                         ranges=plan.diagnose_ranges)


def diagnose_sets(model: nn.Module, spec: ModelSpec, plan: Plan, calib: dict, sets: dict, *,
                  reference: torch.Tensor | None = None, ranges: bool = False) -> tuple[Diagnosis, pd.DataFrame]:
    """Each seed's sets against that seed's real images (a seeded pool draw when real is not a source);
    the first seed's probes are kept for the views.

    ``reference``: real images every set is measured against instead (the benchmarks' fixed reference,
    so that sets of different seeds are compared on one scale); then the real calibration set is
    measured as a set too, each set's pixels against the model's valid range (``spec.valid_range``),
    and every set at the SDA band of the paper's ε, not its own margins (whatever ε it was made with).
    ``ranges``: also the min/max activation ranges each set calibrates over those of the seed's real
    images (``range_ratios``: is a set's effect its pixel range?)."""
    first, frames = None, []
    for seed in plan.seeds:
        real = calib.get(("real", seed))
        if real is None:
            real = real_calibration(plan.model, plan.generation.samples, seed)
        if reference is None:
            measured = {label(src): calib[(src, seed)] for src in plan.sources if src != "real"}
            diag = diagnose(model, measured, real, spec.input_shape, margins=set_margins(sets, seed),
                            epsilon=plan.generation.epsilon)
            metrics = diag.metrics()
        else:  # the real set is measured too, under another name than the reference's until its row is dropped
            measured = {label(src) if src != "real" else _REAL_SET: calib[(src, seed)] for src in plan.sources}
            diag = diagnose(model, measured, reference, spec.input_shape, epsilon=GenerationConfig().epsilon,
                            valid_range=spec.valid_range)
            metrics = diag.metrics().drop(index=REAL)
        if ranges:
            metrics = metrics.join(_range_ratios(model, {n: diag.images[n] for n in metrics.index}, real))
        metrics = metrics.rename(index={_REAL_SET: REAL})
        frames.append(metrics_frame(metrics, plan.sources, seed))
        first = first or diag
    return first, pd.concat(frames, ignore_index=True)


_REAL_SET = "Real (calibration set)"


def _range_ratios(model: nn.Module, sets: dict[str, torch.Tensor], real: torch.Tensor) -> pd.DataFrame:
    """One row per set: its activation ranges over ``real``'s (``diagnostics.range_ratios``)."""
    device = next(model.parameters()).device
    base = activation_ranges(model, real.to(device))
    return pd.DataFrame.from_dict({n: range_ratios(activation_ranges(model, x.to(device)), base)
                                   for n, x in sets.items()}, orient="index")


def set_margins(sets: dict, seed: int) -> Margins | None:
    """The DSG set's own SDA margins, so the slack band drawn is the one it was generated with."""
    s = sets.get(("dsg", seed))
    return Margins(s.delta, s.gamma) if s is not None and s.delta is not None else None


def metrics_frame(df: pd.DataFrame, sources: tuple[str, ...], seed: int) -> pd.DataFrame:
    """Diagnosis.metrics() (indexed by label) -> columns set, source, seed, metrics…"""
    source_of = {label(s): s for s in sources} | {REAL: "real"}
    out = df.copy()
    out.insert(0, "seed", seed)
    out.insert(0, "source", [source_of.get(n, n) for n in df.index])
    out.insert(0, "set", list(df.index))
    return out.reset_index(drop=True)


def save(store: RunStore, result: RunResult) -> tuple[int | None, str]:
    """The run into the history (its plan, metrics, result rows and generated sets): (run id, a note
    when it was saved elsewhere or not at all). A finished run is never thrown away for its store."""
    plan = result.plan
    try:
        return store.save_run(model=plan.model, title=plan.title or title_of(plan),
                              config={"plan": plan.to_dict(), "seconds": result.seconds,
                                      "provenance": result.provenance},
                              metric_rows=result.metrics.to_dict("records"),
                              result_rows=result.results.to_dict("records"),
                              sets={k: s for k, s in result.sets.items() if s is not None})
    except DSGError as exc:
        return None, f"it could not be saved ({exc}); its results stay on screen until you close the page"


def title_of(plan: Plan) -> str:
    g = plan.generation
    parts = [n for n, on in (("SDA", g.sda), ("LSE", g.lse), ("SCI", g.sci)) if on]
    cells = ", ".join(f"W{w}A{a}" for w, a in plan.bits)
    range_note = "" if g.pixel_range == "free" else f" · pixels {g.pixel_range}"
    return (f"DSG ({'+'.join(parts) or 'none'}){' + priors' if plan.priors else ''} · ε {g.epsilon:g}{range_note} · "
            f"{g.samples} samples × {g.iterations} it × {len(plan.seeds)} seed(s) · {cells} "
            f"{'/'.join(plan.quantizers)}")


# ------------------------------------------------------------------------------------------ helpers
def _private(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


class _Reporter:
    """Progress of the run's tasks: each event carries its task's index in ``extra["task"]``."""

    def __init__(self, progress: ProgressFn, names: list[str]):
        self.progress, self.names = progress, names

    def sub(self, k: int) -> ProgressFn:
        if self.progress is None:
            return None
        name = self.names[k]
        return lambda p: self.progress(Progress(name, p.step, p.total, p.loss, p.parts, {**p.extra, "task": k}))

    def task(self, k: int):
        """A context that reports task ``k`` as started, then done."""
        return _Task(self.sub(k))

    def done(self, k: int) -> None:
        if self.progress is not None:
            self.sub(k)(Progress("done", 1, 1))


class _Task:
    def __init__(self, report: ProgressFn):
        self.report = report

    def __enter__(self):
        if self.report:
            self.report(Progress("start", 0, 1))

    def __exit__(self, kind, *_):
        if self.report and kind is None:
            self.report(Progress("done", 1, 1))


def reopen(run_record, plan: Plan, resources: Resources) -> RunResult:
    """A stored run back on screen without recomputing: its sets from the store, real calibration
    redrawn by seed, the first seed re-probed for the views. ``run_record`` is a ``runstore.Run``."""
    sets, calib = {}, {}
    for src, seed in plan.calibrations:
        if src == "real":
            sets[(src, seed)] = None
            calib[(src, seed)] = real_calibration(plan.model, plan.generation.samples, seed, pool=resources.pool)
        else:
            s = run_record.load_run_set(src, seed)
            sets[(src, seed)], calib[(src, seed)] = s, s.images
    diagnosis = None
    if plan.diagnose:  # against the real images the run measured against: a draw from the same pool
        s0 = plan.seeds[0]
        real = {("real", s0): real_calibration(plan.model, plan.generation.samples, s0, pool=resources.pool)}
        diagnosis, _ = _diagnose(plan.replace(seeds=(s0,), diagnose_ranges=False), resources, {**real, **calib}, sets)
    metrics = pd.DataFrame([{"set": label(r["source"]) if r["source"] != "real" else REAL, **r}
                            for r in run_record.metric_rows()])
    return RunResult(plan, sets, calib, diagnosis, metrics, pd.DataFrame(run_record.results),
                     seconds=float(run_record.config.get("seconds", 0.0)), run_id=run_record.id,
                     provenance=run_record.config.get("provenance", {}))
