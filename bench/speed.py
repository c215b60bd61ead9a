"""Generation speed: overhead over a bare forward+backward, throughput, and how cost grows.

    python bench/speed.py            # full run (several minutes), writes docs/performance.md
    python bench/speed.py --quick    # fewer repeats and sizes

The lower bound of one generation iteration is one forward plus one backward pass of the model on
the batch (gradient to the input). The overhead ratio divides the measured iteration time by that
bound, both measured here in one run, interleaved, as medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import header, write_doc
from dsg_core.generation import GenerationConfig, generate
from dsg_core.models import get_spec, load_model

METHODS = {"ZeroQ": dict(method="zeroq"), "SDA+LSE": dict(method="dsg", sci=False),
           "DSG (SDA+LSE+SCI)": dict(method="dsg")}


def bare_step(model, x: torch.Tensor) -> float:
    """One forward + backward to the input, seconds."""
    x = x.detach().requires_grad_(True)
    t = time.perf_counter()
    model(x).sum().backward(inputs=[x])
    return time.perf_counter() - t


def iteration_times(model, shape, cfg: GenerationConfig) -> list[float]:
    """Per-iteration wall times of a real generation run, from progress-callback timestamps."""
    stamps: list[float] = []
    generate(model, shape, cfg, num_classes=10, progress=lambda p: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def overhead(model, shape, batch: int, iters: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{method: (median iteration s, ratio to the bare pass)} with bare passes interleaved."""
    x = torch.randn(batch, *shape)
    for _ in range(3):
        bare_step(model, x)  # warm-up
    out = {}
    for name, kw in METHODS.items():
        cfg = GenerationConfig(samples=batch, batch_size=batch, iterations=iters, **kw)
        its, bares = [], []
        for _ in range(repeats):
            bares += [bare_step(model, x) for _ in range(max(3, iters // 4))]
            its += iteration_times(model, shape, cfg)
        it, bare = statistics.median(its), statistics.median(bares)
        out[name] = (it, it / bare, bare)
    return out


def scaling(model, shape, batches, iters: int) -> list[tuple[int, float]]:
    rows = []
    for b in batches:
        cfg = GenerationConfig(samples=b, batch_size=b, iterations=iters)
        rows.append((b, statistics.median(iteration_times(model, shape, cfg))))
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-resnet18", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    repeats, iters = (2, 8) if args.quick else (3, 15)
    lines = [header("Performance of sample generation"), ""]

    lines += ["## Overhead ratio (iteration / bare forward+backward to the input)", "",
              "| model | batch | method | iteration (ms) | bare fwd+bwd (ms) | ratio |", "|---|---|---|---|---|---|"]
    models = [("resnet20_mnist", 64), ("mobilenetv2_mnist", 64)] + ([] if args.skip_resnet18 else [("resnet18", 32)])
    for name, batch in models:
        spec = get_spec(name)
        model = load_model(name, weights="random" if spec.dataset == "imagenet" else None)
        it_reps, it_iters = (repeats, iters) if spec.dataset == "mnist" else (1, 4)
        for method, (it, ratio, bare) in overhead(model, spec.input_shape, batch, it_iters, it_reps).items():
            row = f"| {name} | {batch} | {method} | {it * 1e3:.1f} | {bare * 1e3:.1f} | {ratio:.2f} |"
            print(row, flush=True)
            lines.append(row)

    spec = get_spec("resnet20_mnist")
    model = load_model(spec.name)
    lines += ["", "## Default run: 64 samples, full DSG, 500 iterations, resnet20_mnist", ""]
    cfg = GenerationConfig(samples=64, batch_size=64, iterations=100 if args.quick else 500)
    t = time.perf_counter()
    generate(model, spec.input_shape, cfg, num_classes=10)
    sec = (time.perf_counter() - t) * (500 / cfg.iterations)
    lines += [f"- {sec:.1f} s for 64 images (target <= 60 s); {64 / sec:.2f} images/s"
              + (" (extrapolated from 100 iterations)" if args.quick else "")]
    print(lines[-1], flush=True)

    lines += ["", "## Time per iteration against batch size (resnet20_mnist, full DSG)", "",
              "| batch | ms / iteration | ms / image |", "|---|---|---|"]
    for b, s in scaling(model, spec.input_shape, [16, 32, 64, 128] + ([] if args.quick else [256]), 6):
        lines.append(f"| {b} | {s * 1e3:.1f} | {s * 1e3 / b:.2f} |")
        print(lines[-1], flush=True)
    write_doc("performance.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
