"""Long work behind the page: the engine's ``run(plan)`` in a background thread, with live progress.

The page polls the job's :class:`Tracker` from a fragment to draw the progress bar and the loss of
each set as it generates; Cancel sets an event the engine checks at every step (it raises
``Cancelled``). The pipeline itself is the engine's (``dsg_core.experiments.run``): this module only
threads it and keeps score.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import partial

import pandas as pd

from dsg_core.errors import Cancelled, DSGError
from dsg_core.experiments import Plan, Resources, RunResult, reopen, run, task_names
from dsg_core.progress import Progress
from dsg_core.runstore import Run, RunStore

from .resources import Context
from .state import plan_of_record, runs_dir

log = logging.getLogger(__name__)

EPSILONS = (0.5, 0.7, 0.9, 1.0)   # the ε small multiples' slack quantiles
# The component small multiples: (label, SDA, LSE, SCI); ZeroQ is "none of them"
COMPONENTS = (("ZeroQ (none)", False, False, False), ("SDA", True, False, False), ("SDA+LSE", True, True, False),
              ("SDA+LSE+SCI", True, True, True), ("LSE", False, True, False), ("SCI", False, False, True))


@dataclass
class Tracker:
    """Progress of a run, written by the worker threads and read by the page (plain values only)."""
    stages: list[str]
    fractions: dict[int, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # generation task -> loss so far
    started: float = field(default_factory=time.time)

    def __call__(self, p: Progress) -> None:
        k = p.extra.get("task", 0)
        self.fractions[k] = p.fraction if p.step < p.total else 1.0
        if p.stage.startswith("Generate") and p.step > 0 and p.loss == p.loss:
            self.curves.setdefault(p.stage, []).append(p.loss)

    @property
    def active(self) -> list[str]:
        return [f"{self.stages[i]} ({f:.0%})" for i, f in sorted(self.fractions.items())
                if f < 1.0 and i < len(self.stages)]

    @property
    def done(self) -> int:
        return sum(f >= 1.0 for f in self.fractions.values())

    @property
    def overall(self) -> float:
        return min(1.0, sum(self.fractions.values()) / max(len(self.stages), 1))


class Job:
    """Long work in a background thread; ``status`` is running, done, cancelled or error.

    ``work(tracker, cancel)`` is the pipeline; ``kind`` tells the page where its result goes.
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
        # every core for the joint generation pass; run() shares them out when it quantizes in parallel
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


def resources(ctx: Context, plan: Plan) -> Resources:
    """The engine's resources from the page's loaded model and data (no reload per Run)."""
    test_x, test_y, pool = ctx.data()
    return Resources.of(ctx.spec, ctx.model, test_x, test_y, pool, plan.eval_images)


def run_job(plan: Plan, ctx: Context) -> Job:
    """The Run: every source, diagnostics, quantization; saved to the history."""
    store = RunStore(runs_dir())

    def work(tracker: Tracker, cancel) -> RunResult:
        return run(plan, progress=tracker, cancel=cancel, store=store, resources=resources(ctx, plan))
    return Job("run", task_names(plan), work)


# ------------------------------------------------------------------------------------ small multiples
def variants(plan: Plan, kind: str) -> dict[str, Plan]:
    """The plans of one family of small multiples: DSG at each ε, or DSG with each component set.
    ZeroQ and real data run once beside them as reference lines."""
    g = plan.generation.replace(method="dsg")
    if kind == "epsilon":
        out = {f"ε = {e:g}": plan.replace(sources=("dsg",), generation=g.replace(epsilon=e, sda=True))
               for e in EPSILONS}
    else:
        out = {name: plan.replace(sources=("dsg",), generation=g.replace(sda=sda, lse=lse, sci=sci))
               for name, sda, lse, sci in COMPONENTS if sda or lse or sci}
    out["ZeroQ · real (reference)"] = plan.replace(sources=("zeroq", "real"))
    return out


def ablation_job(plan: Plan, ctx: Context, kind: str) -> Job:
    """Every variant of ``kind`` run as its own plan (cached sets are reused); a frame per variant."""
    family = variants(plan.replace(bits=(min(plan.bits),)), kind)
    names = [f"{name}: {stage}" for name, p in family.items() for stage in task_names(p)[:-1]]

    def work(tracker: Tracker, cancel) -> dict[str, RunResult]:
        out, offset = {}, 0
        for name, p in family.items():
            shift = partial(_shifted, tracker, offset)
            out[name] = run(p, progress=shift, cancel=cancel, resources=resources(ctx, p))
            offset += len(task_names(p)) - 1
        return out
    return Job(f"ablation-{kind}", names, work)


def _shifted(tracker: Tracker, offset: int, p: Progress) -> None:
    k = p.extra.get("task", 0) + offset
    tracker(Progress(p.stage, p.step, p.total, p.loss, p.parts, {**p.extra, "task": k}))


def ablation_frame(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per variant, source and seed: top-1, range-jitter mean and the spread ratio."""
    frames = []
    for name, r in results.items():
        df = r.results.assign(variant=name)
        if not r.metrics.empty and "stat_spread_ratio" in r.metrics:
            df = df.merge(r.metrics[["source", "seed", "stat_spread_ratio"]], on=["source", "seed"], how="left")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------- history
def reopen_run(record: Run, ctx: Context) -> RunResult:
    """A stored run back on screen: its plan, sets and results, without recomputing."""
    plan = plan_of_record(record.config)
    return reopen(record, plan, resources(ctx, plan))
