"""The Run: generate every calibration set, diagnose them, quantize with each, save to the history.

The work runs in a background thread (:class:`Job`) so the page stays responsive: the app polls the
job's :class:`Tracker` from a fragment to draw the live progress bar and loss curves, and the
Cancel button sets an event the engine checks at every step (it raises ``Cancelled``). The pipeline
itself (:func:`run_pipeline`) is a plain function of settings and data, so tests can call it too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

import pandas as pd
import torch
import torch.nn as nn

from dsg_core.diagnostics import REAL, Diagnosis, diagnose
from dsg_core.errors import Cancelled, DSGError
from dsg_core.evaluate import evaluate_quantized
from dsg_core.experiments import SetCache, calibration_set, real_calibration
from dsg_core.generation import Margins, SyntheticSet
from dsg_core.logit_cache import fp32_logits
from dsg_core.quant import quantize_model
from dsg_core.runstore import Run, RunStore

from .resources import Context
from .state import EPSILONS, LABELS, SOURCES, WORKERS, Settings, runs_dir

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Everything the views draw, kept in session state so a plot selector never recomputes it."""
    settings: Settings
    sets: dict[tuple[str, int], SyntheticSet | None]   # (source, seed) -> set (None for real data)
    calib: dict[tuple[str, int], torch.Tensor]          # (source, seed) -> calibration images
    diagnosis: Diagnosis                                # of the first seed, keyed by display label
    metrics: pd.DataFrame                               # one row per set and seed
    results: pd.DataFrame                               # one row per set, seed and bit-width
    run_id: int | None = None
    seconds: float = 0.0
    ablation: pd.DataFrame | None = None                # epsilon ablation, when computed
    saved_note: str = ""                                # where the run went when not to the history

    @property
    def model(self) -> nn.Module:
        return self.diagnosis.model

    def first_seed_sets(self) -> dict[str, torch.Tensor]:
        """Display label -> images of the first seed, in display order."""
        s0 = self.settings.seed
        return {LABELS[src]: self.calib[(src, s0)] for src in SOURCES if (src, s0) in self.calib}


@dataclass
class Tracker:
    """Progress of a run, written by the worker threads and read by the page (plain values only).

    Stages may run two at a time, so each has its own fraction done; the page shows the ones running.
    """
    stages: list[str]
    fractions: dict[int, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def update(self, index: int, fraction: float) -> None:
        self.fractions[index] = fraction

    @property
    def active(self) -> list[str]:
        return [self.stages[i] for i, f in sorted(self.fractions.items()) if f < 1.0]

    @property
    def done(self) -> int:
        return sum(f >= 1.0 for f in self.fractions.values())

    @property
    def overall(self) -> float:
        return min(1.0, sum(self.fractions.values()) / max(len(self.stages), 1))


def stage_plan(settings: Settings) -> list[str]:
    """The stage names of a run, in order: generation, diagnosis, quantization, saving."""
    gen = [f"Generate {LABELS[src]} (seed {seed})" for seed, src in generation_jobs(settings)]
    quant = [f"Quantize with {LABELS[src]} (seed {seed})" for seed, src in quantization_jobs(settings)]
    return gen + ["Diagnose diversity"] + quant + ["Save to history"]


def generation_jobs(settings: Settings) -> list[tuple[int, str]]:
    return [(seed, src) for seed in settings.seed_list for src in SOURCES if src != "real"]


def quantization_jobs(settings: Settings) -> list[tuple[int, str]]:
    return [(seed, src) for seed in settings.seed_list for src in SOURCES]


def set_cache(ctx: Context) -> SetCache:
    """Generated sets on disk, reused by identical settings (keyed by model, weights file and config)."""
    return SetCache(runs_dir() / "cache", ctx.weights)


def in_parallel(tasks: list, workers: int) -> list:
    """Run zero-argument tasks on ``workers`` threads (torch ops release the GIL), results in order."""
    if workers <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(workers, thread_name_prefix="dsg-task") as pool:
        futures = [pool.submit(t) for t in tasks]
        return [f.result() for f in futures]


def run_pipeline(settings: Settings, ctx: Context, tracker: Tracker, cancel=None,
                 store: RunStore | None = None, workers: int = WORKERS) -> RunResult:
    """Generate, diagnose, quantize and evaluate, save; raises DSGError (incl. Cancelled).

    Independent sets are generated (and quantized) ``workers`` at a time, each task on its own copy
    of the model, because generation and calibration hook into the network.
    """
    t0 = time.perf_counter()
    spec, (test_x, test_y, pool) = ctx.spec, ctx.data()
    cache = set_cache(ctx)
    jobs = generation_jobs(settings)

    def generate_one(k: int, seed: int, source: str):
        tracker.update(k, 0.0)
        curve = tracker.curves.setdefault(f"{LABELS[source]} · seed {seed}", [])
        base = settings.source_base(source, spec.input_shape[-1]).replace(seed=seed)
        out = calibration_set(ctx.private_model(), spec, source, base, cache=cache, cancel=cancel,
                              progress=_generation_progress(tracker, k, curve))
        tracker.update(k, 1.0)
        return out

    made = in_parallel([partial(generate_one, k, seed, src) for k, (seed, src) in enumerate(jobs)], workers)
    calib = {(src, seed): images for (seed, src), (images, _) in zip(jobs, made)}
    sets = {(src, seed): s for (seed, src), (_, s) in zip(jobs, made)}
    for seed in settings.seed_list:
        calib[("real", seed)] = real_calibration(spec.name, settings.samples, seed, pool=pool)
    stage = len(jobs)
    model = ctx.private_model()
    tracker.update(stage, 0.0)
    diagnosis, metrics = diagnose_all(model, spec.input_shape, settings, calib, sets)
    tracker.update(stage, 1.0)
    test = TestSet.of(model, test_x[:settings.eval_images], test_y[:settings.eval_images])
    tasks = [partial(quantize_rows, ctx.private_model(), test, settings, src, seed, calib[(src, seed)],
                     partial(tracker.update, stage + 1 + i), cancel)
             for i, (seed, src) in enumerate(quantization_jobs(settings))]
    rows = [row for chunk in in_parallel(tasks, workers) for row in chunk]
    result = RunResult(settings, sets, calib, diagnosis, metrics, pd.DataFrame(rows),
                       seconds=round(time.perf_counter() - t0, 2))
    if store is not None:
        result.run_id, result.saved_note = save(store, result, ctx)
    tracker.update(len(tracker.stages) - 1, 1.0)
    return result


def _generation_progress(tracker: Tracker, index: int, curve: list[float]):
    def report(p):
        tracker.update(index, min(p.fraction, 0.999))
        curve.append(p.loss)
    return report


def set_margins(sets: dict, seed: int) -> Margins | None:
    """The DSG set's own SDA margins, so the slack band drawn is the one it was generated with."""
    s = sets.get(("dsg", seed))
    if s is not None and s.delta is not None:
        return Margins(s.delta, s.gamma)
    return None


def diagnose_all(model: nn.Module, input_shape, settings: Settings, calib: dict,
                 sets: dict) -> tuple[Diagnosis, pd.DataFrame]:
    """Diagnose each seed's sets against that seed's real calibration images; keep the first seed's probes."""
    first, frames = None, []
    for seed in settings.seed_list:
        synthetic = {LABELS[src]: calib[(src, seed)] for src in SOURCES if src != "real"}
        diag = diagnose(model, synthetic, calib[("real", seed)], input_shape,
                        margins=set_margins(sets, seed), epsilon=settings.eps)
        frames.append(metrics_frame(diag.metrics(), seed))
        first = first or diag
    return first, pd.concat(frames, ignore_index=True)


def metrics_frame(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Diagnosis.metrics() (indexed by label) -> columns set, source, seed, metrics…"""
    source_of = {v: k for k, v in LABELS.items()}
    out = df.copy()
    out.insert(0, "seed", seed)
    out.insert(0, "source", [source_of.get(n, "real" if n == REAL else n) for n in df.index])
    out.insert(0, "set", list(df.index))
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class TestSet:
    """The evaluation images with the FP32 model's logits, computed once (and kept on disk, see
    ``dsg_core/logit_cache.py``) instead of once per quantized model."""
    x: torch.Tensor
    y: torch.Tensor
    fp_logits: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> "TestSet":
        return cls(x, y, fp32_logits(model, x))

    def evaluate(self, q_model: nn.Module) -> dict[str, float]:
        return evaluate_quantized(None, q_model, self.x, self.y, fp_logits=self.fp_logits)


def quantize_rows(model: nn.Module, test: TestSet, settings: Settings, source: str, seed: int,
                  images: torch.Tensor, report, cancel) -> list[dict]:
    """Quantize at every bit-width with one calibration set; one result row each."""
    rows, bits = [], settings.bits()
    for k, (w, a) in enumerate(bits):
        res = test.evaluate(quantize_model(model, images, settings.quant_config(w, a, seed), cancel=cancel))
        rows.append({"set": LABELS[source], "source": source, "seed": seed, "wbits": w, "abits": a,
                     "bits": f"W{w}A{a}", "quantizer": settings.quantizer, "top1": res["quant_top1"],
                     "fp32_top1": res["fp32_top1"], "agreement": res["agreement"], "kl": res["kl"]})
        report((k + 1) / len(bits))
    return rows


# ---------------------------------------------------------------------------------------- history
def set_file(source: str, seed: int) -> str:
    return f"{source}_s{seed}"


def save(store: RunStore, result: RunResult, ctx: Context) -> tuple[int | None, str]:
    """(run id, a note when it was not saved to ``store`` as usual): a locked or damaged store is
    retried, then replaced by a fresh one (``RunStore.add_safely``); if even that fails the finished
    result stays on screen, unsaved, with the reason."""
    config = {**result.settings.to_dict(), "weights": ctx.weights, "test_dir": ctx.test_dir,
              "seconds": result.seconds}
    metrics = {f"{r['source']}@{r['seed']}": {k: v for k, v in r.items() if k not in ("set", "source", "seed")}
               for r in result.metrics.to_dict("records")}
    sets = {set_file(src, seed): s for (src, seed), s in result.sets.items() if s is not None}
    try:
        run_id, _, note = store.add_safely(ctx.spec.name, result.settings.title, config, metrics,
                                           result.results.to_dict("records"), sets)
    except DSGError as exc:
        return None, f"the run could not be saved to the history ({exc}); its results are shown here only"
    return run_id, note


def stored_metrics(run: Run) -> pd.DataFrame:
    """A stored run's metrics back as the frame RunResult.metrics uses."""
    rows = []
    for key, values in run.metrics.items():
        source, _, seed = key.rpartition("@")
        rows.append({"set": LABELS.get(source, source), "source": source, "seed": int(seed), **values})
    return pd.DataFrame(rows)


def result_from_run(run: Run, ctx: Context) -> RunResult:
    """Rebuild a stored run: load its sets, redraw real calibration by seed, re-probe the first seed."""
    settings = Settings.from_dict(run.config)
    model, pool = ctx.private_model(), ctx.data()[2]
    sets, calib = {}, {}
    for seed in settings.seed_list:
        calib[("real", seed)] = real_calibration(ctx.spec.name, settings.samples, seed, pool=pool)
        for source in SOURCES[:-1]:
            s = run.load_set(set_file(source, seed))
            sets[(source, seed)], calib[(source, seed)] = s, s.images
    diagnosis, _ = diagnose_all(model, ctx.spec.input_shape, replace(settings, seeds=1), calib, sets)
    return RunResult(settings, sets, calib, diagnosis, stored_metrics(run), pd.DataFrame(run.results),
                     run_id=run.id, seconds=float(run.config.get("seconds", 0.0)))


# ---------------------------------------------------------------------------------------- the job
class Job:
    """Long work in a background thread; ``status`` is running, done, cancelled or error.

    ``work(tracker, cancel)`` is the pipeline (:func:`run_job` or :func:`ablation_job`, or QAT training
    with its own tracker); ``kind`` tells the page where its result goes.
    """

    def __init__(self, kind: str, stages: list[str], work, tracker=None):
        self.kind, self.work = kind, work
        self.tracker = tracker if tracker is not None else Tracker(stages)
        self.cancel_event = threading.Event()
        self.status, self.error, self.result = "running", "", None
        self.thread = threading.Thread(target=self._work, name=f"dsg-{kind}", daemon=True)

    def start(self) -> "Job":
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        return self.status == "running"

    def _work(self) -> None:
        # one intra-op thread per parallel task on a small machine: more would oversubscribe the cores
        torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // WORKERS)))
        try:
            self.result = self.work(self.tracker, self.cancel_event.is_set)
            self.status = "done"
        except Cancelled:
            self.status = "cancelled"
        except DSGError as exc:
            self.status, self.error = "error", str(exc)
        except Exception as exc:  # a bug: log the traceback, show one line
            log.error("%s failed:\n%s", self.kind, traceback.format_exc())
            self.status, self.error = "error", f"internal error ({type(exc).__name__}): {exc}"


def run_job(settings: Settings, ctx: Context) -> Job:
    """The Run: every source, diagnostics, quantization; saved to the run store."""
    store = RunStore(runs_dir())
    return Job("run", stage_plan(settings), partial(run_pipeline, settings, ctx, store=store))


def ablation_job(settings: Settings, ctx: Context) -> Job:
    """DSG at several slack quantiles, quantized at the chosen bit-width (paper's epsilon ablation)."""
    stages = [f"DSG ε = {eps:g} (seed {seed})" for seed, eps in ablation_jobs(settings)]
    return Job("ablation", stages, partial(epsilon_ablation, settings, ctx))


def ablation_jobs(settings: Settings) -> list[tuple[int, float]]:
    return [(seed, eps) for seed in settings.seed_list for eps in EPSILONS]


def epsilon_ablation(settings: Settings, ctx: Context, tracker: Tracker, cancel=None,
                     workers: int = WORKERS) -> pd.DataFrame:
    """One row per (epsilon, seed): the top-1 of DSG data generated at that epsilon (sets are cached)."""
    spec, (test_x, test_y, _) = ctx.spec, ctx.data()
    cache = set_cache(ctx)
    test = TestSet.of(ctx.model, test_x[:settings.eval_images], test_y[:settings.eval_images])
    w, a = settings.wbits, settings.abits

    def one(k: int, seed: int, eps: float) -> dict:
        base = settings.source_base("dsg", spec.input_shape[-1]).replace(seed=seed, epsilon=eps)
        model = ctx.private_model()
        curve = tracker.curves.setdefault(f"DSG · ε {eps:g} · seed {seed}", [])
        images, _ = calibration_set(model, spec, "dsg", base, cache=cache, cancel=cancel,
                                    progress=_generation_progress(tracker, k, curve))
        res = test.evaluate(quantize_model(model, images, settings.quant_config(w, a, seed), cancel=cancel))
        tracker.update(k, 1.0)
        return {"epsilon": eps, "seed": seed, "bits": f"W{w}A{a}", "top1": res["quant_top1"],
                "fp32_top1": res["fp32_top1"]}

    tasks = [partial(one, k, seed, eps) for k, (seed, eps) in enumerate(ablation_jobs(settings))]
    return pd.DataFrame(in_parallel(tasks, workers))
