"""Soak: N consecutive dashboard runs in one process; resident memory must stay under a bound.

    python bench/soak.py                       # 20 runs at the dashboard defaults (about 20-30 min)
    python bench/soak.py --runs 20 --iters 20  # shorter runs, same code path

Runs the dashboard's own Run (its plan from ``Settings.to_plan``, the engine's ``run`` with the run
store) the way the app does, and prints RSS after each run. The bound: after the first run (which loads data, models,
allocator pools), RSS may grow by at most 15% over the remaining runs. Writes docs/soak.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from common import header, write_doc


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--iters", type=int, default=None, help="override the default iterations")
    p.add_argument("--bound", type=float, default=0.15, help="allowed relative RSS growth after run 1")
    args = p.parse_args()
    os.environ.setdefault("DSG_RUNS_DIR", tempfile.mkdtemp(prefix="dsg-soak-"))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the dashboard package
    from dashboard.runner import Tracker
    from dashboard.state import DEFAULTS, Settings, runs_dir
    from dsg_core.experiments import Resources, run, task_names
    from dsg_core.models import default_model_name
    from dsg_core.runstore import RunStore

    name = default_model_name()
    store = RunStore(runs_dir())
    base = Settings(**{**DEFAULTS, "model": name})
    if args.iters:
        base = replace(base, iterations=args.iters)
    res = Resources.load(base.to_plan())
    rss = []
    for i in range(args.runs):
        plan = replace(base, seed=10 * i).to_plan()  # new sets every run: nothing is served from the cache
        result = run(plan, progress=Tracker(task_names(plan)), store=store, resources=res)
        rss.append(rss_mib())
        print(f"run {i + 1}/{args.runs}: {result.seconds:.1f} s, RSS {rss[-1]:.0f} MiB", flush=True)
    growth = (max(rss[1:]) - rss[0]) / rss[0] if len(rss) > 1 else 0.0
    verdict = "PASS" if growth <= args.bound else "FAIL"
    lines = [header("Soak: consecutive dashboard runs in one process"), "",
             f"Settings: {base.to_dict()}", "", "| run | RSS (MiB) |", "|---|---|"]
    lines += [f"| {i + 1} | {r:.0f} |" for i, r in enumerate(rss)]
    lines += ["", f"RSS growth after the first run: {growth * 100:+.1f}% (bound {args.bound * 100:.0f}%): "
              f"**{verdict}**; {len(store.list())} runs in the store."]
    write_doc("soak.md", "\n".join(lines) + "\n")
    raise SystemExit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
