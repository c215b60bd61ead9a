"""Where the dashboard's live defaults come from: the iterations at which ZeroQ's and DSG's losses
plateau, and the wall time of the default Run.

    python bench/live_defaults.py                 # plateau of 3 seeds x ZeroQ/DSG x free/clip, then timing
    python bench/live_defaults.py --timing-only   # only the default Run's wall time (3 repeats)

A loss has plateaued at iteration t when, over the rest of the run, it never falls below 95% of
its value at t (ZeroQ's L2 and DSG's hinge are different objectives: each is judged on its own).
Results: docs/live-defaults.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the dashboard's defaults are timed as it runs them

from common import header, write_doc  # noqa: E402  (after the path: the bench folder's own module)

from dashboard.state import DEFAULTS, Settings  # noqa: E402
from dsg_core.diagnostics.convergence import TOLERANCE, plateau  # noqa: E402
from dsg_core.experiments import Resources, run  # noqa: E402
from dsg_core.generation import GenerationConfig, generate  # noqa: E402
from dsg_core.models import get_spec, load_model  # noqa: E402

MODEL = "resnet20_mnist"


def measure_plateaus(samples: int, iterations: int, seeds: int) -> list[dict]:
    spec, model = get_spec(MODEL), load_model(MODEL)
    rows = []
    for method in ("zeroq", "dsg"):
        for pixel_range in ("free", "clip"):
            for seed in range(seeds):
                cfg = GenerationConfig(method=method, samples=samples, iterations=iterations, seed=seed,
                                       pixel_range=pixel_range)
                s = generate(model, spec.input_shape, cfg, num_classes=spec.num_classes, valid_range=spec.valid_range)
                losses = [h["loss"] for h in s.history]
                at = DEFAULTS["iterations"]
                rows.append({"method": method, "pixel_range": pixel_range, "seed": seed, "plateau": plateau(losses),
                             "loss_100": losses[min(99, len(losses) - 1)],
                             "loss_default": losses[min(at - 1, len(losses) - 1)],
                             "final": losses[-1]})
                print(rows[-1], flush=True)
    return rows


def time_default_run(repeats: int) -> list[float]:
    """Wall seconds of the dashboard's default Run (its plan, loaded resources, no set cache)."""
    settings = Settings(**{**DEFAULTS, "model": MODEL})
    plan = settings.to_plan()
    res = Resources.load(plan)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(plan, resources=res)
        out.append(time.perf_counter() - t)
        print(f"default Run: {out[-1]:.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timing-only", action="store_true")
    args = ap.parse_args()
    text = [header("Live defaults: converged, several seeds, within a minute"), ""]
    if not args.timing_only:
        rows = measure_plateaus(args.samples, args.iterations, args.seeds)
        text += [f"Plateau: the first iteration after which the loss never falls below {TOLERANCE:.0%} of its value "
                 f"(resnet20_mnist, {args.samples} images, {args.iterations} Adam steps, "
                 f"seeds 0-{args.seeds - 1}).", "",
                 f"| method | pixels | seed | plateau at | loss at 100 | loss at {DEFAULTS['iterations']} "
                 "| final loss |",
                 "|---|---|---|---|---|---|---|"]
        text += [f"| {r['method']} | {r['pixel_range']} | {r['seed']} | {r['plateau']} | {r['loss_100']:.4g} | "
                 f"{r['loss_default']:.4g} | {r['final']:.4g} |" for r in rows]
        worst = max(r["plateau"] for r in rows if r["method"] == "zeroq")
        at = DEFAULTS["iterations"]
        dsg = [r for r in rows if r["method"] == "dsg"]
        text += ["", f"Latest ZeroQ plateau: iteration {worst}. The dashboard's default is {at} iterations "
                     f"({'at or past' if at >= worst else 'BEFORE'} every ZeroQ plateau).",
                 "DSG's SDA hinge has no plateau by this relative rule: it decays geometrically towards 0 as the "
                 "last samples enter the slack band (final hinge " + ", ".join(f"{r['final']:.2g}" for r in dsg)
                 + "; a ZeroQ loss is about 8-12)."]
    times = time_default_run(args.repeats)
    text += ["", f"Default Run ({DEFAULTS['seeds']} seeds × DSG, ZeroQ, Gaussian and real; {DEFAULTS['samples']} "
                 f"images; {DEFAULTS['iterations']} iterations; W{DEFAULTS['wbits']}A{DEFAULTS['abits']} "
                 f"{DEFAULTS['quantizer']} with range jitter; {DEFAULTS['eval_images']} test images), in process, "
                 f"no set cache: median {statistics.median(times):.1f} s over {len(times)} "
                 f"({', '.join(f'{t:.1f}' for t in times)} s)."]
    write_doc("live-defaults.md", "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
