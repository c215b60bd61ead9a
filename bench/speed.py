"""Generation speed: overhead over a bare forward+backward, throughput, memory, and how cost grows.

    python bench/speed.py            # full run (about 10 minutes on 2 cores), writes docs/performance.md
    python bench/speed.py --quick    # fewer repeats and sizes, 100 instead of 500 iterations

The lower bound of one generation iteration is one forward plus one backward pass of the model on
the batch (gradient to the input). The overhead ratio divides the measured iteration time by that
bound, both measured here in one run, interleaved, as medians. The bound is measured twice: on the
model as loaded (the issue's definition) and on the generator's fast copy of it (BN folded,
channels-last), whose ratio is the cost of DSG's own work alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from common import header, timed_cli, write_doc

from dsg_core.generation import GenerationConfig, generate
from dsg_core.generation.generator import fast_copy, forward_fn
from dsg_core.models import get_spec, load_model
from dsg_core.resources import resolve_device

METHODS = {"ZeroQ": dict(method="zeroq"), "SDA+LSE": dict(method="dsg", sci=False),
           "DSG (SDA+LSE+SCI)": dict(method="dsg")}


def sync(device) -> None:
    """Wait for queued GPU work, so wall-clock timers measure it (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(model, x: torch.Tensor, precision: str = "fp32") -> float:
    """One forward + backward to the input, seconds."""
    x = x.detach().requires_grad_(True)
    forward = forward_fn(model, x.device, precision)
    sync(x.device)
    t = time.perf_counter()
    forward(x).sum().backward(inputs=[x])
    sync(x.device)
    return time.perf_counter() - t


def iteration_times(model, shape, cfg: GenerationConfig, device="cpu", precision: str = "fp32") -> list[float]:
    """Per-iteration wall times of a real generation run, from progress-callback timestamps (each
    iteration reads its loss back, so on a GPU the stamps follow the GPU's work)."""
    stamps: list[float] = []
    generate(model, shape, cfg, num_classes=10, progress=lambda p: stamps.append(time.perf_counter()),
             device=device, precision=precision)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def overhead(model, shape, batch: int, iters: int, repeats: int, device="cpu",
             precision: str = "fp32") -> dict[str, tuple[float, float, float, float]]:
    """{method: (median iteration s, ratio to the bare pass, bare s, ratio to the fast copy's bare pass)}."""
    x = torch.randn(batch, *shape, device=device)
    model = model.to(device)
    fast = fast_copy(model, shape, device)
    x_fast = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and x.is_cpu else x
    for _ in range(3):
        bare_step(model, x, precision), bare_step(fast, x_fast, precision)  # warm-up
    out = {}
    for name, kw in METHODS.items():
        cfg = GenerationConfig(samples=batch, batch_size=batch, iterations=iters, **kw)
        its, bares, fasts = [], [], []
        for _ in range(repeats):
            n = max(3, iters // 4)
            bares += [bare_step(model, x, precision) for _ in range(n)]
            fasts += [bare_step(fast, x_fast, precision) for _ in range(n)]
            its += iteration_times(model, shape, cfg, device, precision)
        it, bare, bare_fast = statistics.median(its), statistics.median(bares), statistics.median(fasts)
        out[name] = (it, it / bare, bare, it / bare_fast)
    return out


def scaling(model, shape, batches, iters: int) -> list[tuple[int, float]]:
    rows = []
    for b in batches:
        cfg = GenerationConfig(samples=b, batch_size=b, iterations=iters)
        rows.append((b, statistics.median(iteration_times(model, shape, cfg))))
    return rows


def resolution_scaling(model, sizes, batch: int, iters: int) -> list[tuple[int, float]]:
    """The embedded nets end in adaptive pooling, so they run at any size (timing only: the BN
    statistics were measured at 28 px)."""
    cfg = GenerationConfig(samples=batch, batch_size=batch, iterations=iters)
    return [(px, statistics.median(iteration_times(model, (1, px, px), cfg))) for px in sizes]


def samples_scaling(model, shape, counts, iters: int) -> list[tuple[int, float]]:
    rows = []
    for n in counts:
        t = time.perf_counter()
        generate(model, shape, GenerationConfig(samples=n, batch_size=64, iterations=iters), num_classes=10)
        rows.append((n, time.perf_counter() - t))
    return rows


def cli_run(iterations: int) -> tuple[float, float]:
    """(generation seconds as the CLI reports them, wall seconds of the whole process)."""
    with tempfile.TemporaryDirectory() as tmp:
        res, wall = timed_cli("generate", "--method", "dsg", "--samples", "64", "--iterations", str(iterations),
                              "--out", f"{tmp}/s.safetensors")
        return res["seconds"], wall


PEAK_PROBE = """
import json, sys, threading, time, torch
from dsg_core.generation import GenerationConfig, generate
from dsg_core.models import get_spec, load_model
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
spec = get_spec("resnet20_mnist"); model = load_model(spec.name)
model(torch.zeros(2, *spec.input_shape))
base, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.005)
t = threading.Thread(target=sample); t.start()
generate(model, spec.input_shape, GenerationConfig(samples=int(sys.argv[1]), iterations=int(sys.argv[2])))
done.set(); t.join()
print(json.dumps({"base_kb": base, "peak_kb": max(peak[0], rss())}))
"""


def peak_memory(samples: int, iters: int) -> tuple[float, float]:
    """(RSS MiB of a process holding torch and the model, extra MiB at the peak of generation,
    sampled every 5 ms), in a fresh process so nothing measured before counts."""
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(samples), str(iters)], check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["base_kb"] / 1024, (r["peak_kb"] - r["base_kb"]) / 1024


NOTES = """## What the generator does to be fast, and what did not help

Kept (each has a test that the fast path gives the same losses and gradients as the plain one):
- **Per-sample statistics of all BN layers in one forward pass** (hooks reduce each BN input to
  (B, C) sums of x and x^2 as the pass runs; no loops over samples or channels). Two plain
  reductions with a fused backward instead of `torch.var_mean` (a slow Welford kernel on CPU), and
  `x.square().sum` instead of `linalg.vector_norm` (5x slower over (H, W) on channels-last).
- **One vectorized step for all layers** (`BNStats.collect`): the hooks keep raw sums; division by
  H*W, variance, the folded-BN map back to the BN input and the square root run once on the
  concatenated (B, C_total) tensors instead of as a dozen small ops per layer (and their backward).
  Measured 2026-11-26, 3 alternating runs of 80 iterations (median ms per iteration, resnet20_mnist,
  batch 64, full DSG): before 130.5 / 145.5 / 138.9, after 118.3 / 126.1 / 129.3 (-9%).
- **Freed memory stays in the process** (`resources.retain_freed_memory`, glibc `mallopt`): by
  default glibc hands the ~20 MB of activations freed at the end of each iteration back to the OS, and
  the next iteration page-faults them in again: 3,000-4,500 minor faults per iteration, against 16
  with the thresholds raised. 3 alternating runs: 127.8 / 131.3 / 122.5 ms without, 117.9 / 109.4 /
  121.7 ms with (-7%). (An earlier one-run-each test on 2026-11-25 had seen no effect beyond noise.)
- **A frozen, BN-folded, channels-last copy of the model** (`generation/generator.py::fast_copy`):
  eval-mode BN is an affine map, so it is folded into the conv before it and its input statistics
  are recovered from the conv output per channel (x = mu + (y - beta) sigma / gamma); this removes
  BN's own forward and backward. Channels-last speeds up oneDNN's convolutions on CPU. The
  "ratio to the fast copy" column divides by a bare pass of this copy: it is the cost of DSG's own
  work (statistics, losses, optimizer).
- Margins, BN targets, the LSE matrix and SCI's reference spectrum are computed once per run.
- **Several sets in one pass** (`generation/many.py::generate_many`, issue 20): the sets of several
  seeds and sources (ZeroQ and DSG variants) that share samples, batch size and iterations are
  optimized as one batch of S x n images through one forward and backward per iteration; each set
  keeps its own loss (BN terms per sample; SCI and the priors per set on the (S, n, ...) view),
  normalised by its own n, its own Adam state, schedule, pixel range, labels and jitter, and equals
  its lone `generate()` to float tolerance (`tests/test_generation_many.py`; most sets come out
  bit-identical). `compare` and `experiments.calibration_sets` generate through it; measurements
  in `docs/seeds-speed.md` (`bench/seeds.py`).
- **No `torch.optim.Optimizer` for the images** (`generation/optim.py`): building any Optimizer
  imports `torch._dynamo`, 2.2-3.5 s on these cores, paid by every fresh process that generates
  (each CLI `generate`, each dashboard generation job). The images are one tensor: torch's functional Adam
  (`torch.optim.adam.adam`, what `Adam.step` calls) with the plateau and cosine rules written
  out gives the same steps without it. Tested step for step against `torch.optim.Adam` and the two
  schedulers; the default run (64 x 500, seed 0, plateau schedule) gave bit-identical images. The CLI's generation
  time on a quiet machine went from 64.1-65.1 s to 55.1-56.7 s (2026-11-26; the machine was in a
  faster phase too: a bare pass 88-105 ms against 102-112 ms).

Where the rest of an iteration goes (torch.profiler, resnet20_mnist, batch 64, 2026-11-26): the
convolutions' forward and backward are ~60% and run near the CPU's peak (about 4.8 GFLOP each way
in ~40 ms: ~120 GFLOP/s on 2 AVX2 cores); ReLU and the residual adds ~10%; the statistics' four
memory passes per layer (sum, square, sum forward; the fused backward and the gradient
accumulation) ~12-15%, at memory bandwidth. Fusing those passes needs generated kernels (below).
A second profile (2026-11-26, after the changes above): convolutions 82.5 of 123.6 ms (67%), the
element-wise passes (square, ReLU and its backward, the statistics' backward, gradient adds) 28.5 ms.

Tried and dropped (measured on this machine; one process per run, interleaved):
- **The batch split over two threads** (each shard single-threaded, on its own model copy, its
  per-sample losses and gradient added up; the SCI and prior terms on the whole batch): bit-identical
  images, but per-iteration medians against one two-threaded pass of 0.93-0.99x for resnet20_mnist
  and 1.03-1.09x for mobilenetv2_mnist (4 alternating runs each, 2026-11-26) - not worth the threads.
- `torch.compile` (inductor, CPU) of the statistics alone (sum and sum of squares in one pass; the
  backward in one): 9.4 -> 5.9 ms forward and 21 -> 13 ms backward for the 21 layers in isolation,
  but no gain inside the generation loop (145.8 and 137.9 ms against 131.9 and 144.6 eager), after
  a 28 s cold compile. Of the whole forward pass with hooks (2026-11-25): 66 s to compile, then
  140.9 ms per iteration against 136.8 ms eager.
- `OMP_WAIT_POLICY=ACTIVE`/`PASSIVE`: no gain (PASSIVE slower). `OMP_PROC_BIND`, `OMP_PLACES=cores`,
  `GOMP_SPINCOUNT=0`: within the machine's noise (the same setting's bare pass ranged 83-113 ms).
- The sum of squares as `linalg.vecdot` over the (N, HW, C) view of channels-last activations (no
  squared temporary): 0.3-0.5 ms less per iteration of ~120 in a micro-benchmark; not worth the code.
- Mixed precision (bfloat16 autocast, `--precision bf16`) on these AVX2 CPUs: emulated, slower. On
  an H200 it did not help either at these batch sizes (launch-bound; `docs/gpu.md`).

GPU numbers (one H200, 2026-11-26) are in `docs/gpu.md`: about 10 ms per iteration for
resnet20_mnist at batch 64 and for ResNet-18 at 224 px, batch 32.
"""


def gpu_main(device: torch.device) -> None:
    """The GPU section (`--device cuda`): overhead ratios in fp32 and bf16 on the embedded and two
    ImageNet models (random weights: timing only), the default run, and batch scaling."""
    lines = [header(f"Performance of sample generation on {torch.cuda.get_device_name(device)}"), ""]
    lines += ["## Overhead ratio (iteration / bare forward+backward to the input)", "",
              "| model | batch | precision | method | iteration (ms) | bare fwd+bwd (ms) | ratio |",
              "|---|---|---|---|---|---|---|"]
    for name, batch, precisions in [("resnet20_mnist", 64, ["fp32"]), ("mobilenetv2_mnist", 64, ["fp32"]),
                                    ("resnet18", 32, ["fp32", "bf16"]), ("resnet50", 32, ["fp32", "bf16"])]:
        spec = get_spec(name)
        model = load_model(name, weights="random" if spec.dataset == "imagenet" else None)
        for prec in precisions:
            for method, (it, ratio, bare, _) in overhead(model, spec.input_shape, batch, 12, 2, device, prec).items():
                lines.append(f"| {name} | {batch} | {prec} | {method} | {it * 1e3:.1f} "
                             f"| {bare * 1e3:.1f} | {ratio:.2f} |")
                print(lines[-1], flush=True)
        write_doc("performance-cuda.md", "\n".join(lines) + "\n")  # after each part: a timeout keeps what ran
    spec = get_spec("resnet20_mnist")
    model = load_model(spec.name)
    lines += ["", "## Default run: 64 samples, full DSG, 500 iterations, resnet20_mnist", ""]
    for run in (1, 2):
        t = time.perf_counter()
        s = generate(model, spec.input_shape, GenerationConfig(samples=64, batch_size=64, iterations=500),
                     num_classes=10, device=device)
        sec = time.perf_counter() - t
        lines.append(f"- run {run}: {sec:.1f} s for 64 images ({500 / sec:.0f} iterations/s); final loss "
                     f"{s.history[-1]['loss']:.3g}")
        print(lines[-1], flush=True)
    write_doc("performance-cuda.md", "\n".join(lines) + "\n")
    lines += ["", "## Time per iteration against batch size (resnet20_mnist, full DSG)", "",
              "| batch | ms / iteration | ms / image |", "|---|---|---|"]
    for b in [64, 256, 1024, 4096]:
        it = statistics.median(iteration_times(model, spec.input_shape,
                                               GenerationConfig(samples=b, batch_size=b, iterations=8), device))
        lines.append(f"| {b} | {it * 1e3:.1f} | {it * 1e3 / b:.3f} |")
        print(lines[-1], flush=True)
    write_doc("performance-cuda.md", "\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-resnet18", action="store_true")
    p.add_argument("--device", default="cpu", help="cuda: the GPU section instead, into docs/performance-cuda.md")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.device != "cpu":
        device = resolve_device(args.device)
        if device.type != "cuda":
            raise SystemExit(f"--device {args.device}: no CUDA GPU here (the GPU section needs one)")
        return gpu_main(device)
    repeats, iters = (2, 8) if args.quick else (3, 15)
    lines = [header("Performance of sample generation"), ""]

    lines += ["## Overhead ratio (iteration / bare forward+backward to the input)", "",
              "| model | batch | method | iteration (ms) | bare fwd+bwd (ms) | ratio | ratio to the fast copy |",
              "|---|---|---|---|---|---|---|"]
    models = [("resnet20_mnist", 64), ("mobilenetv2_mnist", 64)] + ([] if args.skip_resnet18 else [("resnet18", 32)])
    for name, batch in models:
        spec = get_spec(name)
        model = load_model(name, weights="random" if spec.dataset == "imagenet" else None)
        it_reps, it_iters = (repeats, iters) if spec.dataset == "mnist" else (1, 4)
        for method, (it, ratio, bare, ratio_fast) in overhead(model, spec.input_shape, batch, it_iters,
                                                               it_reps).items():
            row = (f"| {name} | {batch} | {method} | {it * 1e3:.1f} | {bare * 1e3:.1f} "
                   f"| {ratio:.2f} | {ratio_fast:.2f} |")
            print(row, flush=True)
            lines.append(row)

    spec = get_spec("resnet20_mnist")
    model = load_model(spec.name)
    lines += ["", "## Default run: 64 samples, full DSG, 500 iterations, resnet20_mnist", ""]
    cfg = GenerationConfig(samples=64, batch_size=64, iterations=100 if args.quick else 500)
    fast = fast_copy(model, spec.input_shape, "cpu")
    x_fast = torch.randn(64, *spec.input_shape).contiguous(memory_format=torch.channels_last)
    for run in (1, 2):  # twice: the machine's speed drifts; the bare pass just before says how fast it was
        bare = statistics.median([bare_step(fast, x_fast) for _ in range(25)])
        t = time.perf_counter()
        generate(model, spec.input_shape, cfg, num_classes=10)
        sec = (time.perf_counter() - t) * (500 / cfg.iterations)
        lines += [f"- run {run}: {sec:.1f} s for 64 images (target <= 60 s: {'met' if sec <= 60 else 'NOT met'}); "
                  f"{64 / sec:.2f} images/s"
                  + (" (extrapolated from 100 iterations)" if args.quick else "")
                  + f"; a bare forward+backward of the fast copy took {bare * 1e3:.0f} ms just before, "
                    f"so {sec / 500 / bare:.2f}x of it per iteration"]
        print(lines[-1], flush=True)
    for run in (1, 2):  # what a user waits for: the CLI in a fresh process, imports and all
        gen, wall = cli_run(cfg.iterations)
        lines += [f"- CLI run {run} (`python -m dsg_core generate --samples 64 --iterations {cfg.iterations}`, a fresh "
                  f"process): generation {gen:.1f} s, wall clock with Python's start and imports {wall:.1f} s"]
        print(lines[-1], flush=True)
    base, extra = peak_memory(64, 20)
    lines += [f"- peak memory: a process holding torch and the model has {base:.0f} MiB resident; generating "
              f"the 64 images (one batch) adds {extra:.0f} MiB at the peak (sampled every 5 ms)"]
    print(lines[-1], flush=True)

    lines += ["", "## Time per iteration against batch size (resnet20_mnist, full DSG)", "",
              "| batch | ms / iteration | ms / image |", "|---|---|---|"]
    for b, s in scaling(model, spec.input_shape, [16, 32, 64, 128] + ([] if args.quick else [256]), 6):
        lines.append(f"| {b} | {s * 1e3:.1f} | {s * 1e3 / b:.2f} |")
        print(lines[-1], flush=True)

    lines += ["", "## Time per iteration against resolution (resnet20_mnist, batch 64, full DSG)", "",
              "| pixels | ms / iteration | ms / 1000 pixels of one image |", "|---|---|---|"]
    for px, s in resolution_scaling(model, [14, 28, 56], 64, 6):
        lines.append(f"| {px}x{px} | {s * 1e3:.1f} | {s * 1e6 / (px * px):.2f} |")
        print(lines[-1], flush=True)

    n_iters = 20 if args.quick else 50
    lines += ["", f"## Generation time against number of samples (resnet20_mnist, batch 64, {n_iters} iterations)",
              "", "| samples | seconds | ms / image / iteration |", "|---|---|---|"]
    for n, s in samples_scaling(model, spec.input_shape, [64, 128, 256], n_iters):
        lines.append(f"| {n} | {s:.1f} | {s * 1e3 / n / n_iters:.2f} |")
        print(lines[-1], flush=True)
    lines += ["", NOTES]
    write_doc("performance.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
