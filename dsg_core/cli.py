"""``python -m dsg_core`` / ``dsg``: the engine from a terminal, for scripts and benchmarks.

Every subcommand is a thin layer over the library functions the dashboard calls. ``--json`` prints
one JSON document on stdout (progress goes to stderr). Errors the user can fix exit with status 2
and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import Cancelled, ConfigError, DataError, DSGError
from .limits import check_set_size


# ---------------------------------------------------------------------------------------- helpers
def _progress_bar(enabled: bool):
    """A tqdm bar on stderr when it is a terminal (or forced); returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm
    bar = {"bar": None}

    def callback(p):
        if bar["bar"] is None or bar["bar"].total != p.total or bar["bar"].desc != p.stage:
            if bar["bar"] is not None:
                bar["bar"].close()
            bar["bar"] = tqdm(total=p.total, desc=p.stage, file=sys.stderr, leave=False, dynamic_ncols=True)
        bar["bar"].n = p.step
        bar["bar"].set_postfix(loss=f"{p.loss:.4g}", refresh=False)
        bar["bar"].refresh()

    return callback, lambda: bar["bar"] and bar["bar"].close()


def _callbacks(args, bar: bool):
    """(progress, cancel, close): a terminal bar, or, in a background job, reports into its table."""
    if getattr(args, "job", None) is not None:
        progress, cancel = args.job_store.reporter(args.job)
        return progress, cancel, lambda: None
    progress, close = _progress_bar(bar)
    return progress, None, close


def _emit(obj, as_json: bool, text: str):
    try:
        print(json.dumps(obj, indent=2, default=float) if as_json else text)
    except OSError as exc:  # a full disk, or a pipe whose reader has gone: an error, not a traceback
        raise DSGError(f"cannot write the output: {exc.strerror or exc}") from None
    return obj


# smallest and largest value of each whole-number option (None: no bound); floats must be finite
BOUNDS = {"samples": (1, None), "iterations": (1, None), "seed": (0, 2**32 - 1), "eval_samples": (1, None),
          "real_samples": (2, None), "jitter": (0, None), "plateau_patience": (1, None), "epochs": (0, None),
          "iters_per_epoch": (1, None), "warmup_epochs": (0, None), "wbits": (1, 32), "abits": (1, 32)}


def check_numbers(args) -> None:
    """Refuse, before any work, a negative count, a seed torch cannot take, an inf or NaN: argparse
    only checks that they parse ("--eval-samples -995" used to score 5 images and report 100%)."""
    import math
    for name, value in vars(args).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, not {value}")
        if name in BOUNDS and isinstance(value, int) and not isinstance(value, bool):
            low, high = BOUNDS[name]
            if value < low or (high is not None and value > high):
                raise ConfigError(f"{flag} must be {'at least ' + str(low) if high is None else f'{low}..{high}'}"
                                  f", not {value}")
    batch = getattr(args, "batch_size", None)
    if isinstance(batch, int) and batch < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch}")


def check_output(path: Path) -> None:
    """An output file that cannot be written is refused before the work, not after hours of it."""
    import os
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory: give a file name, e.g. {path / 'set.safetensors'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"--out {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"--out {path}: not writable")


# ---------------------------------------------------------------------------------------- models
def cmd_models(args) -> None:
    from .models import bn_layer_names, list_models
    rows = [{"name": s.name, "default": s.default, "input_shape": list(s.input_shape),
             "num_classes": s.num_classes, "bn_layers": bn_layer_names(s.build()), "fp32_top1": s.fp32_top1,
             "dataset": s.dataset, "description": s.description} for s in list_models()]
    text = "\n".join(f"{'*' if r['default'] else ' '} {r['name']:<20} {str(tuple(r['input_shape'])):<15} "
                     f"{len(r['bn_layers']):>3} BN  top-1 {r['fp32_top1'] or '-'}  {r['description']}" for r in rows)
    return _emit(rows, args.json, text)


# ---------------------------------------------------------------------------------------- generate
def add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--method", choices=["gaussian", "zeroq", "dsg"], default="dsg")
    g.add_argument("--preset", choices=["paper", "reference", "best"], default="paper",  # config.PRESETS (lazy)
                   help="paper: the formulas only; reference: DSG's released code's objective (priors, init, "
                        "lr, patience, LSE mode); best: reference without SDA, the pixels clamped to the valid "
                        "range at the end (docs/best.md; the former best, with SDA: --preset reference "
                        "--pixel-range clamp-after)")
    g.add_argument("--epsilon", type=float, help="SDA slack quantile in (0, 1] (default 0.9)")
    g.add_argument("--lse-weight", type=float, help="LSE enhancement weight (default 2)")
    g.add_argument("--lse-mode", choices=["paper", "reference"],
                   help="paper: sample j at layer j mod N weighted lse-weight; reference: DSG's code, the gap of "
                        "sample i < min(B, 20) at layer i times lse-weight (its square times lse-weight^2)")
    g.add_argument("--sci-weight", type=float, help="SCI weight (default 1)")
    for part in ("sda", "lse", "sci"):
        g.add_argument(f"--no-{part}", action="store_true", help=f"switch {part.upper()} off")
    g.add_argument("--samples", type=int, help="number of images (default 64)")
    g.add_argument("--batch-size", type=_batch_size,
                   help="images optimized together (default 64, at most the samples); "
                        "'auto': the largest up to that default which fits the free memory")
    g.add_argument("--iterations", type=int, help="Adam iterations per batch (default 500)")
    g.add_argument("--lr", type=float)
    g.add_argument("--init", choices=["auto", "gaussian", "uniform", "zeroq"],
                   help="auto (default): the method's own (zeroq: ZeroQ's near-constant start, else N(0,1)); "
                        "gaussian N(0,1); uniform U[0,1); zeroq")
    g.add_argument("--schedule", choices=["plateau", "cosine", "constant"])
    g.add_argument("--plateau-patience", type=int, help="plateau schedule patience in iterations (default 100)")
    g.add_argument("--min-lr", type=float, help="plateau schedule floor (default: 1e-4 for zeroq as ZeroQ's code, "
                                                "else none)")
    g.add_argument("--seed", type=int, default=0)
    for prior in ("ce", "tv", "l2"):
        g.add_argument(f"--{prior}-weight", type=float)
    g.add_argument("--jitter", type=int, help="max random translation in pixels")
    g.add_argument("--jitter-target", choices=["model", "priors"],
                   help="which sees the jittered copy: model (default) or priors (DSG's code: TV and L2 only)")
    g.add_argument("--tv-form", choices=["squared", "norm4"], help="squared (default) or norm4 (DSG's code)")
    g.add_argument("--l2-form", choices=["squared", "norm"], help="squared (default) or norm (DSG's code)")
    g.add_argument("--pixel-range", choices=["free", "clip", "clamp-after"],
                   help="pixels against the model's valid input range: free (default, the paper), clip "
                        "(projected after every step) or clamp-after (clamped once at the end)")


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch size must be a number or 'auto', not {text!r}") from None


def generation_config(args, image_size: int):
    from .generation import preset
    over = {"method": args.method, "seed": args.seed}
    names = {"epsilon": "epsilon", "lse_weight": "lse_weight", "sci_weight": "sci_weight", "samples": "samples",
             "batch_size": "batch_size", "iterations": "iterations", "lr": "lr", "init": "init", "schedule": "schedule",
             "ce_weight": "ce_weight", "tv_weight": "tv_weight", "l2_weight": "l2_weight", "jitter": "jitter",
             "pixel_range": "pixel_range", "lse_mode": "lse_mode", "plateau_patience": "plateau_patience",
             "min_lr": "min_lr", "jitter_target": "jitter_target", "tv_form": "tv_form", "l2_form": "l2_form"}
    if args.batch_size == "auto" and args.command != "generate":
        raise ConfigError("--batch-size auto is for `generate`; give a number here")
    over.update({field: getattr(args, a) for a, field in names.items() if getattr(args, a) not in (None, "auto")})
    over.update({part: False for part in ("sda", "lse", "sci") if getattr(args, f"no_{part}")})
    return preset(args.preset, image_size=image_size, **over).validate()


def cmd_generate(args) -> None:
    from .distributed import generate_distributed, world
    from .generation import generate_named
    from .models import get_spec, load_model
    spec = get_spec(args.model)
    cfg = generation_config(args, spec.input_shape[-1])
    check_output(args.out)
    check_set_size(cfg.samples, spec.input_shape)
    if args.batch_size == "auto":
        from .resources import fit_batch_size
        fitted = fit_batch_size(load_model(args.model, weights=args.weights, device=args.device), spec.input_shape,
                                min(cfg.samples, 64), args.device)
        if fitted < min(cfg.samples, 64):
            print(f"batch size {fitted}: the largest that fits the free memory of {args.device}", file=sys.stderr)
        cfg = cfg.replace(batch_size=fitted)
    rank, size = world()
    callback, cancel, close = _callbacks(args, rank == 0 and not args.quiet and (sys.stderr.isatty() or args.progress))
    try:
        if size > 1:  # launched by torchrun: split the batches over the ranks
            model = load_model(args.model, weights=args.weights, device=args.device)
            synthetic = generate_distributed(model, spec, cfg, args.out, args.device, callback, cancel, args.precision)
            if synthetic is None:
                return None
        else:
            synthetic = generate_named(args.model, cfg, weights=args.weights, device=args.device, progress=callback,
                                       cancel=cancel, precision=args.precision)
            synthetic.save(args.out)
    finally:
        close()
    last = synthetic.history[-1] if synthetic.history else {}
    summary = {"out": str(args.out), "model": args.model, "label": cfg.label, "samples": len(synthetic),
               "processes": size,
               "seconds": synthetic.seconds, "final_loss": last.get("loss"), "first_loss":
               synthetic.history[0]["loss"] if synthetic.history else None, "config": cfg.to_dict()}
    return _emit(summary, args.json, f"{cfg.label}: {len(synthetic)} images in {synthetic.seconds:.1f} s -> {args.out}")


# ---------------------------------------------------------------------------------------- import-set
def cmd_import_set(args) -> None:
    from .data.imported import import_set
    from .models import get_spec
    spec = get_spec(args.model)
    out = args.out or Path(f"{args.path.name.removesuffix(args.path.suffix) or 'imported'}.safetensors")
    check_output(out)
    if out.resolve() == args.path.resolve():
        raise ConfigError(f"--out {out} is the file being imported: give another name")
    synthetic = import_set(args.path, spec, label=args.label, normalized=args.normalized)
    synthetic.save(out)
    summary = {"out": str(out), "model": spec.name, "label": synthetic.label, "samples": len(synthetic),
               "config": synthetic.config, "provenance": synthetic.stamp()}
    return _emit(summary, args.json, f"{synthetic.label}: {len(synthetic)} images imported from "
                                     f"{args.path.name} -> {out}")


# ---------------------------------------------------------------------------------------- diagnose
def cmd_diagnose(args) -> None:
    from .data import real_split
    from .data.folder import load_image_folder
    from .diagnostics import REAL, diagnose
    from .generation import SyntheticSet
    from .models import get_spec, load_model
    spec = get_spec(args.model)
    synthetic = SyntheticSet.load(args.samples)
    images = check_set_fits(synthetic, spec)
    if len(images) < 2:
        raise DataError(f"the set has {len(images)} image(s): diversity metrics compare images, so give at least 2")
    model = load_model(args.model, weights=args.weights, device=args.device)
    real = (load_image_folder(args.real_folder, spec, limit=args.real_samples)[0] if args.real_folder
            else real_split(args.model, "train")[0][:args.real_samples])
    name = synthetic.label if synthetic.label != REAL else f"{REAL} (the set)"  # the report's row of the set
    report = diagnose(model, {name: images}, real, spec.input_shape, valid_range=spec.valid_range).metrics()
    row = report.loc[name].to_dict()
    return _emit(row, args.json, report.T.to_string(float_format=lambda v: f"{v:.4g}"))


def check_set_fits(synthetic, spec):
    """The set's images as float32, if they fit this model: a set made for another input shape, or
    of whole numbers (int8 is not model-input space), is refused; float16/float64 are converted."""
    if tuple(synthetic.images.shape[1:]) != tuple(spec.input_shape):
        raise DataError(f"the synthetic set has images of shape {tuple(synthetic.images.shape[1:])} but "
                        f"{spec.name} takes {tuple(spec.input_shape)} "
                        f"(it was made for {synthetic.model or 'another model'})")
    if not synthetic.images.is_floating_point():
        raise DataError(f"the synthetic set's images are {str(synthetic.images.dtype).removeprefix('torch.')}: a set "
                        "holds floating-point images in the model's input space (as `generate` writes them)")
    if len(synthetic.images) == 0:
        raise DataError("the synthetic set has no images")
    return synthetic.images.float()


# ---------------------------------------------------------------------------------------- quantize
def add_quant_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    from .experiments import DEFAULT_ABITS, DEFAULT_QUANTIZER, DEFAULT_WBITS
    from .quant import QUANTIZERS
    g = p.add_argument_group("quantization")
    if many:
        g.add_argument("--bits", default="4/4,6/6,8/8", help="comma-separated W/A pairs, e.g. 4/4,3/3")
        g.add_argument("--quantizers", default=DEFAULT_QUANTIZER, help=f"comma-separated, from {', '.join(QUANTIZERS)}")
    else:
        g.add_argument("--wbits", type=int, default=DEFAULT_WBITS, help="weight bits, 2-8 or 32 (off)")
        g.add_argument("--abits", type=int, default=DEFAULT_ABITS, help="activation bits, 2-8 or 32 (off)")
        g.add_argument("--quantizer", choices=QUANTIZERS, default=DEFAULT_QUANTIZER)
    g.add_argument("--range-jitter", nargs="?", const="0.8,0.9,1.0,1.1,1.2", metavar="FACTORS",
                   help="also evaluate with every activation range scaled by these factors (default "
                        "0.8,0.9,1.0,1.1,1.2): a result that swings is partly the grid's luck")
    g.add_argument("--recon-iters", type=int, help="AdaRound/BRECQ steps per layer or block")
    g.add_argument("--first-last", choices=["same", "8bit"], default="same")
    g.add_argument("--fold-bn", action="store_true")
    g.add_argument("--eval-samples", type=int, help="evaluate on the first N test images only")


def quant_config(args, **kw):
    from .quant import QuantConfig
    over = {"first_last": args.first_last, "fold_bn": args.fold_bn, **kw}
    if args.recon_iters is not None:
        over["recon_iters"] = args.recon_iters
    return QuantConfig(**over).validate()


def cmd_quantize(args) -> None:
    from .data import real_split
    from .data.folder import load_images
    from .experiments import TestSet, quantize_and_evaluate, real_calibration
    from .models import get_spec, load_model
    spec = get_spec(args.model)
    qcfg = quant_config(args, wbits=args.wbits, abits=args.abits, quantizer=args.quantizer, seed=args.seed)
    jitter = parse_factors(args.range_jitter) if args.range_jitter else None
    calib_label = args.calib.capitalize()  # Real, Gaussian; a set file: its own label
    if args.calib in ("real", "gaussian"):
        check_set_size(args.samples, spec.input_shape)
    model = load_model(args.model, weights=args.weights, device=args.device)
    if args.calib == "real":
        pool = load_images(args.real_folder, spec)[0] if args.real_folder else None
        calib = real_calibration(args.model, args.samples, args.seed, pool=pool)
    elif args.calib == "gaussian":
        import torch
        calib = torch.randn((args.samples, *spec.input_shape), generator=torch.Generator().manual_seed(args.seed))
    else:
        from .generation import SyntheticSet
        calib_set = SyntheticSet.load(args.calib)
        calib, calib_label = check_set_fits(calib_set, spec), calib_set.label
    test_x, test_y = (load_images(args.test_folder, spec, args.eval_samples) if args.test_folder
                      else real_split(args.model, "test"))
    if args.eval_samples:
        test_x = test_x[:args.eval_samples]
        test_y = test_y[:args.eval_samples] if test_y is not None else None
    test_x, test_y = test_x.to(args.device), test_y.to(args.device) if test_y is not None else None
    callback, cancel, close = _callbacks(args, sys.stderr.isatty())
    t0 = time.perf_counter()
    try:
        res = quantize_and_evaluate(model, calib.to(args.device), qcfg, TestSet.of(model, test_x, test_y),
                                    progress=callback, cancel=cancel, jitter=jitter)
    finally:
        close()
    res = {"model": args.model, "calib": str(args.calib), "label": calib_label, "wbits": args.wbits,
           "abits": args.abits, "quantizer": args.quantizer, "seed": args.seed, **res,
           "seconds": round(time.perf_counter() - t0, 3)}  # quantization + evaluation
    top1 = (f"top-1 {res['quant_top1']:.2f}% (FP32 {res['fp32_top1']:.2f}%), " if res["quant_top1"] is not None
            else "no labels, ")
    jitter = ("; with activation ranges x" + ", x".join(f"{f} {v:.1f}%" for f, v in res["range_jitter"].items())
              if "range_jitter" in res else "")
    return _emit(res, args.json, f"W{args.wbits}A{args.abits} {args.quantizer} on {calib_label} ({args.calib}): "
                 f"{top1}agreement with FP32 {res['agreement']:.3f}, KL {res['kl']:.4f}{jitter}")


MAX_JITTER = 100.0  # a range scaled further overflows float32 (1e300 did)


def parse_factors(text: str) -> tuple[float, ...]:
    try:
        factors = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--range-jitter takes comma-separated numbers, e.g. 0.9,1.0,1.1; got {text!r}") from None
    if not factors or any(not 0 < f <= MAX_JITTER for f in factors):
        raise ConfigError(f"--range-jitter factors must be positive numbers up to {MAX_JITTER:g}; got {text!r}")
    return factors


def plan_from_args(args):
    """The compare command's arguments as an experiment plan (``plan_argv`` is the inverse)."""
    from .experiments import Plan, parse_bits
    from .models import get_spec
    from .sources import parse_sources
    if getattr(args, "plan", None):
        return _read_plan(args.plan)
    spec = get_spec(args.model)
    generation = generation_config(args, spec.input_shape[-1])
    check_set_size(generation.samples, spec.input_shape)
    return Plan(model=args.model, sources=tuple(parse_sources(args.sources)), seeds=tuple(parse_seeds(args.seeds)),
                bits=tuple(parse_bits(args.bits)), quantizers=tuple(q.strip() for q in args.quantizers.split(",")),
                generation=generation, quant=quant_config(args), priors=args.priors, eval_images=args.eval_samples,
                jitter=parse_factors(args.range_jitter) if args.range_jitter else None, diagnose=not args.no_diagnose,
                weights=args.weights, workers=args.workers, title=args.title or "").validate()


def plan_argv(plan) -> list[str]:
    """A plan as ``compare`` arguments, every setting explicit (background jobs run this)."""
    q = plan.quant
    argv = ["compare", "--model", plan.model, "--sources", ",".join(plan.sources),
            "--seeds", ",".join(map(str, plan.seeds)), "--bits", ",".join(f"{w}/{a}" for w, a in plan.bits),
            "--quantizers", ",".join(plan.quantizers), "--workers", str(plan.workers),
            *generation_argv(plan.generation), "--recon-iters", str(q.recon_iters), "--first-last", q.first_last]
    argv += ["--fold-bn"] * q.fold_bn + ["--priors"] * plan.priors + ["--no-diagnose"] * (not plan.diagnose)
    argv += ["--eval-samples", str(plan.eval_images)] if plan.eval_images else []
    argv += ["--range-jitter", ",".join(map(repr, plan.jitter))] if plan.jitter else []
    argv += ["--weights", plan.weights] if plan.weights else []
    argv += ["--title", plan.title] if plan.title else []
    return argv


def generation_argv(g) -> list[str]:
    """A generation config as the generation arguments ``generation_config`` reads back (every
    setting explicit; ``generate`` and ``compare`` share them)."""
    argv = ["--method", g.method, "--samples", str(g.samples), "--batch-size", str(g.batch_size),
            "--iterations", str(g.iterations), "--lr", repr(g.lr), "--init", g.init, "--schedule", g.schedule,
            "--epsilon", repr(g.epsilon), "--lse-weight", repr(g.lse_weight), "--sci-weight", repr(g.sci_weight),
            "--ce-weight", repr(g.ce_weight), "--tv-weight", repr(g.tv_weight), "--l2-weight", repr(g.l2_weight),
            "--jitter", str(g.jitter), "--pixel-range", g.pixel_range, "--seed", str(g.seed),
            "--lse-mode", g.lse_mode, "--plateau-patience", str(g.plateau_patience), "--jitter-target",
            g.jitter_target, "--tv-form", g.tv_form, "--l2-form", g.l2_form]
    argv += ["--min-lr", repr(g.min_lr)] if g.min_lr is not None else []  # None: the method's own
    return argv + [f"--no-{part}" for part in ("sda", "lse", "sci") if not getattr(g, part)]


def _read_plan(path):
    from .experiments import Plan
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the plan {Path(path).name}: {exc.strerror or exc}") from None
    return Plan.from_json(text).validate()


def cmd_compare(args) -> None:
    from .experiments import SetCache, run
    from .models.remembered import fingerprint
    from .runstore import RunStore, runs_dir
    plan = plan_from_args(args)
    store = RunStore(args.save or runs_dir()) if args.save is not None else None
    version = fingerprint(plan.model)  # a user model's file version: its cached sets are its own
    cache = str(Path(args.cache) / version) if version and args.cache else args.cache
    callback, cancel, close = _callbacks(args, not args.quiet and sys.stderr.isatty())
    try:
        result = run(plan, progress=callback, cancel=cancel, store=store, device=args.device,
                     cache=SetCache(cache, plan.weights))
    finally:
        close()
    rows = result.results.to_dict("records")
    out = {"run_id": result.run_id, "seconds": result.seconds, "plan": plan.to_dict(), "rows": rows,
           "metrics": result.metrics.to_dict("records")} if args.json else rows
    from .provenance import FIELDS
    table = result.results.drop(columns=["model", "set", "range_jitter", *FIELDS], errors="ignore").to_string(
        index=False, float_format=lambda v: f"{v:.2f}")
    saved = f"\nsaved as run #{result.run_id} in {store.root}" if store is not None else ""
    return _emit(out, args.json, table + saved)


def cmd_runs(args) -> None:
    from .runstore import RunStore, runs_dir
    runs = RunStore(args.runs_dir or runs_dir()).list(args.model_filter)
    rows = [{"id": r.id, "title": r.title, "model": r.model, "created": r.created,
             "settings": r.config.get("plan", r.config)} for r in runs]
    text = "\n".join(f"#{r['id']:<5} {r['model']:<20} {r['title']}" for r in rows) or "no saved runs"
    return _emit(rows, args.json, text)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated whole numbers, e.g. 0,1,2; got {text!r}") from None
    low, high = BOUNDS["seed"]
    if not seeds or any(not low <= v <= high for v in seeds):
        raise ConfigError(f"--seeds must be whole numbers in {low}..{high}; got {text!r}")
    return seeds


# ---------------------------------------------------------------------------------------- qat
def add_qat_args(p: argparse.ArgumentParser) -> None:
    from .gdfq import GENERATORS, QATConfig
    d = QATConfig()
    g = p.add_argument_group("quantization-aware training")
    g.add_argument("--generator", choices=GENERATORS, default=d.generator,
                   help="gdfq: GDFQ's generator; dsg: + SDA/LSE/SCI; real: fine-tune on real training images")
    g.add_argument("--wbits", type=int, default=d.wbits, help="weight bits, 2-8 or 32 (off)")
    g.add_argument("--abits", type=int, default=d.abits, help="activation bits, 2-8 or 32 (off)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="QAT epochs after the generator warmup")
    g.add_argument("--iters-per-epoch", type=int, default=d.iters_per_epoch)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="generator-only epochs first")
    g.add_argument("--model-lr", type=float, default=d.model_lr)
    g.add_argument("--generator-lr", type=float, default=d.generator_lr)
    g.add_argument("--calibrator", choices=["minmax", "dsg-avg"], default=d.calibrator)
    g.add_argument("--epsilon", type=float, default=d.epsilon, help="SDA slack quantile in (0, 1]")
    for part in ("sda", "lse", "sci"):
        g.add_argument(f"--no-{part}", action="store_true", help=f"switch {part.upper()} off (--generator dsg)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--eval-samples", type=int, help="evaluate on the first N test images only")
    g.add_argument("--checkpoint", type=Path, help="resume from this file if it exists; rewritten every epoch")


def cmd_qat(args) -> None:
    from .gdfq import QATConfig, train_qat
    from .models import get_spec, load_model
    spec = get_spec(args.model)
    cfg = QATConfig(wbits=args.wbits, abits=args.abits, generator=args.generator, epochs=args.epochs,
                    iters_per_epoch=args.iters_per_epoch, batch_size=args.batch_size, warmup_epochs=args.warmup_epochs,
                    model_lr=args.model_lr, generator_lr=args.generator_lr, calibrator=args.calibrator,
                    epsilon=args.epsilon, sda=not args.no_sda, lse=not args.no_lse, sci=not args.no_sci,
                    eval_samples=args.eval_samples, seed=args.seed).validate()
    model = load_model(args.model, weights=args.weights, device=args.device)
    callback, cancel, close = _callbacks(args, not args.quiet and sys.stderr.isatty())
    try:
        result = train_qat(model, spec, cfg, callback, cancel, args.checkpoint, device=args.device)
    finally:
        close()
    res = {"model": args.model, "generator": args.generator, "wbits": args.wbits, "abits": args.abits,
           "epochs": args.epochs, "iters_per_epoch": args.iters_per_epoch, "seed": args.seed, **result.to_dict()}
    curve = " -> ".join(f"{c['quant_top1']:.2f}" for c in result.curve)
    return _emit(res, args.json, f"W{args.wbits}A{args.abits} QAT ({args.generator}): top-1 {result.quant_top1:.2f}% "
                 f"(PTQ {result.ptq_top1:.2f}%, FP32 {result.fp32_top1:.2f}%) in {result.seconds:.0f} s; "
                 f"per epoch: {curve}")


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsg", description="DSG Lab: diverse sample generation for data-free quantization")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, model=True):
        sp.add_argument("--json", action="store_true", help="print JSON on stdout")
        if model:
            from .models import default_model_name
            sp.add_argument("--model", default=default_model_name())
            sp.add_argument("--weights", help="local weights file (safetensors or weights-only .pt)")
            sp.add_argument("--model-file", help="your model: a state dict for --model's architecture or for "
                                                 "--model-def's network, or a torch.export .pt2 / TorchScript program")
            sp.add_argument("--model-def", metavar="FILE.py:FUNCTION",
                            help="your network's Python definition (or package.module:FUNCTION) returning an "
                                 "nn.Module; weights from --model-file. Runs code: needs --trust-model-file")
            sp.add_argument("--card", help="model card JSON (input_shape, mean, std, num_classes, class_names, "
                                           "real_folder, test_folder); default: NAME.json beside --model-file, "
                                           "else --model's interface")
            sp.add_argument("--trust-model-file", action="store_true",
                            help="allow --model-file to be a program, or --model-def to run (both run the file)")
            sp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (falls back to cpu)")
            # set by dsg_core.jobs when the dashboard runs this command in the background
            sp.add_argument("--job", type=int, help=argparse.SUPPRESS)
            sp.add_argument("--jobs-dir", help=argparse.SUPPRESS)

    common(sub.add_parser("models", help="list the registry"), model=False)
    sp = sub.add_parser("generate", help="generate a synthetic set")
    common(sp)
    add_generation_args(sp)
    sp.add_argument("--out", required=True, type=Path, help="output file (.safetensors)")
    sp.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: mixed precision for the model's forward pass (GPUs); statistics and losses stay fp32")
    sp = sub.add_parser("import-set", help="a set made by another tool (image folder, .npy, .safetensors) "
                                           "as a labelled synthetic set")
    common(sp)
    sp.add_argument("path", type=Path, help="an image folder (PNG/JPEG), a .npy array (N,C,H,W or N,H,W) or a "
                                            ".safetensors file")
    sp.add_argument("--label", required=True, help="the set's name in every table and chart, e.g. 'MCT'")
    sp.add_argument("--normalized", action="store_true",
                    help="the array is already in the model's input space (default: pixels in [0, 1], or uint8 "
                         "0..255, normalized with the model's mean/std); a DSG set file always is")
    sp.add_argument("--out", type=Path, help="output file (default: PATH's name .safetensors, here)")
    sp = sub.add_parser("diagnose", help="diversity metrics of a synthetic set against real data")
    common(sp)
    sp.add_argument("--samples", required=True, type=Path, help="a synthetic set saved by `generate`")
    sp.add_argument("--real-folder", help="real labelled images (ImageFolder layout) for non-embedded models")
    sp.add_argument("--real-samples", type=int, default=512)
    sp = sub.add_parser("quantize", help="quantize with one calibration source and evaluate")
    common(sp)
    sp.add_argument("--calib", default="real", help="real, gaussian, or a synthetic set file")
    sp.add_argument("--samples", type=int, default=64, help="calibration images for real/gaussian")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--test-folder", help="evaluate on these images (class folders: top-1; plain images: agreement "
                                          "with FP32 and KL only); default: the embedded model's test split")
    sp.add_argument("--real-folder", help="real calibration images (--calib real) for non-embedded models")
    add_quant_args(sp)
    sp = sub.add_parser("compare", help="every source x bits x quantizer x seed, as a table")
    common(sp)
    sp.add_argument("--sources", default="gaussian,zeroq,dsg,real",
                    help="comma-separated: real, gaussian, zeroq, zeroq+priors, dsg, sda, lse, sci, "
                         "sda+lse, sda+lse+sci, dsg-reference")
    sp.add_argument("--seeds", default="0")
    sp.add_argument("--cache", default="runs/cache", help="folder for generated sets (reused across runs)")
    sp.add_argument("--priors", action="store_true", help="the reference code's priors on ZeroQ and DSG alike")
    sp.add_argument("--no-diagnose", action="store_true", help="skip the diversity metrics")
    sp.add_argument("--workers", type=int, default=1, help="sets generated / quantized at once (threads)")
    sp.add_argument("--save", nargs="?", const="", default=None, metavar="RUNS_DIR",
                    help="store the run in the history the dashboard shows ($DSG_RUNS_DIR or runs/ by default)")
    sp.add_argument("--title", help="the run's title in the history")
    sp.add_argument("--plan", help="a plan as JSON (Plan.to_json), instead of the settings above")
    sp.add_argument("--quiet", action="store_true")
    add_generation_args(sp)
    add_quant_args(sp, many=True)
    sp = sub.add_parser("runs", help="the stored runs (the dashboard's History)")
    common(sp, model=False)
    sp.add_argument("--runs-dir", help="the run store's folder ($DSG_RUNS_DIR or runs/ by default)")
    sp.add_argument("--model", dest="model_filter", help="only runs of this model")
    sp = sub.add_parser("qat", help="data-free quantization-aware training (GDFQ / DSG generator, or real data)")
    common(sp)
    add_qat_args(sp)
    sp.add_argument("--quiet", action="store_true")
    return p


COMMANDS = {"models": cmd_models, "generate": cmd_generate, "import-set": cmd_import_set, "diagnose": cmd_diagnose,
            "quantize": cmd_quantize, "compare": cmd_compare, "runs": cmd_runs, "qat": cmd_qat}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "job", None) is not None:
        from .jobs import JobStore
        args.job_store = JobStore(args.jobs_dir)
    try:
        check_numbers(args)
        if hasattr(args, "device"):
            from .resources import resolve_device
            args.device = resolve_device(args.device)
        if any(getattr(args, a, None) for a in ("model_file", "model_def", "card")):
            register_user(args)
        result = COMMANDS[args.command](args)
    except DSGError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _finish_job(args, "cancelled" if isinstance(exc, Cancelled) else "failed", str(exc))
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        _finish_job(args, "cancelled", "interrupted")
        return 130
    except BaseException as exc:  # a bug: the job must still not look alive
        _finish_job(args, "failed", f"internal error: {type(exc).__name__}: {exc}")
        raise
    _finish_job(args, "done", "", result)
    return 0


def register_user(args) -> None:
    """Validate the user's model, register it, and say on stderr what was inferred and checked."""
    from .distributed import world
    from .models.user import load_user
    if args.card and not (args.model_file or args.model_def):
        raise ConfigError("--card describes a --model-file or --model-def; give one of them")
    user = load_user(args.model_file, like=args.model, card=args.card, definition=args.model_def,
                     trust_program=args.trust_model_file)
    rank = world()[0]
    args.model = user.register(remember=rank == 0).name
    if rank == 0 and not getattr(args, "quiet", False):
        print("\n".join(f"{args.model}: {note}" for note in [*user.notes, f"later commands can use --model "
                                                                        f"{args.model}"]), file=sys.stderr)


def _finish_job(args, status: str, message: str, result=None) -> None:
    """Report the end of a background job, once: under torchrun only rank 0 (which merges) reports."""
    from .distributed import world
    if getattr(args, "job", None) is not None and world()[0] == 0:
        args.job_store.finish(args.job, status, message, result)
