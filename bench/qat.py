"""Data-free QAT: the plain GDFQ generator vs the DSG generator vs real-data fine-tuning, each next to
PTQ with the same quantizer calibrated on the same source, at several bit-widths, over seeds.

    python bench/qat.py                         # W4A4, W3A3, W2A4 x gdfq, dsg, real x 3 seeds (~1 h, 1 thread)
    python bench/qat.py --seeds 5 --bits 3/3    # more seeds where results swing
    python bench/qat.py --quick                 # the smallest settings: checks the pipeline (about a minute)
    python bench/qat.py --render-only           # rebuild the page from saved rows

Resumable: every finished run is appended to bench/rows/qat-<profile>.jsonl and skipped next time;
stop it any time and start it again. Writes docs/qat.md (docs/qat-quick.md with --quick).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import pandas as pd
from common import Rows, header, rows_file, write_doc

from dsg_core.gdfq import QATConfig, train_qat
from dsg_core.models import get_spec, load_model

GENERATORS = ("gdfq", "dsg", "real")
PROFILES = {
    # the library's default schedule (docs/qat.md states its time)
    "full": dict(bits=["4/4", "3/3", "2/4"], seeds=3, cfg=QATConfig()),
    "quick": dict(bits=["4/4"], seeds=1, cfg=QATConfig(epochs=1, iters_per_epoch=3, warmup_epochs=1, batch_size=16,
                                                        eval_samples=200)),
}


RUN_KEYS = ("wbits", "abits", "generator", "seed")


def settings(cfg: dict) -> str:
    """The schedule and loss settings shared by every run of a table (a changed default starts afresh)."""
    return json.dumps({k: v for k, v in cfg.items() if k not in RUN_KEYS}, sort_keys=True)


def row_key(r: dict) -> tuple:
    """(model, bits, generator, seed, settings): a changed default starts afresh."""
    return r["model"], r["bits"], r["generator"], r["seed"], settings(r["config"])


def run(model_name: str, profile: dict, seeds: list[int], bits: list[str], rows: Rows) -> None:
    spec, model = get_spec(model_name), load_model(model_name)
    shared = settings(profile["cfg"].to_dict())
    jobs = [(b, g, s) for b in bits for s in seeds for g in GENERATORS
            if (model_name, b, g, s, shared) not in rows.keys]
    t0 = time.time()
    for i, (b, g, s) in enumerate(jobs):
        w, a = (int(v) for v in b.split("/"))
        cfg = replace(profile["cfg"], wbits=w, abits=a, generator=g, seed=s)
        r = train_qat(model, spec, cfg)
        rows.add({"model": model_name, "bits": b, "generator": g, "seed": s, "fp32_top1": r.fp32_top1,
                  "ptq_top1": r.ptq_top1, "qat_top1": r.quant_top1, "curve": [c["quant_top1"] for c in r.curve],
                  "seconds": round(r.seconds, 1), "config": r.config})
        print(f"[{i + 1}/{len(jobs)}] W{b.replace('/', 'A')} {g} seed {s}: PTQ {r.ptq_top1:.2f} -> QAT "
              f"{r.quant_top1:.2f} ({r.seconds:.0f} s; {time.time() - t0:.0f} s in all)", flush=True)


def fmt(v: pd.Series) -> str:
    return f"{v.mean():.2f} ± {v.std(ddof=0):.2f}" if len(v) else "-"


def render(rows: list[dict], profile_name: str, profile: dict, model_name: str) -> str:
    shared = settings(profile["cfg"].to_dict())
    df = pd.DataFrame([r for r in rows if r["model"] == model_name and settings(r["config"]) == shared])
    if df.empty:
        return header("Data-free QAT", timing=False) + "\nNo finished runs yet.\n"
    cfg = {k: v for k, v in df.config.iloc[-1].items() if k not in ("wbits", "abits", "generator", "seed")}
    bits = list(dict.fromkeys(df.bits))
    out = [header(f"Data-free QAT: GDFQ generator vs DSG generator vs real data ({profile_name} profile)",
                  timing=False), "",
           f"Model `{model_name}`, FP32 top-1 {df.fp32_top1.iloc[0]:.2f}% on "
           f"{'the first ' + str(cfg['eval_samples']) if cfg.get('eval_samples') else 'all 1,000'} test images. "
           "Cells: top-1 %, mean ± std over seeds (std with ddof=0; n = seeds). "
           "PTQ = the same quantizer (per-channel weights, per-tensor activations after every ReLU, "
           f"`{cfg['calibrator']}` ranges) calibrated on {cfg['calib_samples']} images of the same source "
           "(the trained generator's samples, or real training images); QAT starts from that model.", "",
           f"Schedule: {cfg['warmup_epochs']} generator-only warmup epoch(s), then {cfg['epochs']} QAT epochs of "
           f"{cfg['iters_per_epoch']} steps, batch {cfg['batch_size']}, SGD lr {cfg['model_lr']} (cosine), "
           f"KD T={cfg['kd_temperature']} + CE, activation-range EMA beta {cfg['range_momentum']}. "
           f"Mean time per run: {df.seconds.mean():.0f} s.", "",
           "| source | n | "
           + " | ".join(f"W{b.replace('/', 'A')} PTQ | W{b.replace('/', 'A')} QAT" for b in bits) + " |",
           "|---|---|" + "---|---|" * len(bits)]
    for g in GENERATORS:
        dg = df[df.generator == g]
        if len(dg):
            cells = [f"{fmt(dg[dg.bits == b].ptq_top1)} | {fmt(dg[dg.bits == b].qat_top1)}" for b in bits]
            out.append(f"| {g} | {dg.seed.nunique()} | " + " | ".join(cells) + " |")
    out += ["", "Per-epoch top-1 (epoch 0 = PTQ), mean over seeds:", "", "| source | bits | curve |", "|---|---|---|"]
    for (g, b), d in df.groupby(["generator", "bits"], sort=False):
        curve = pd.DataFrame(d.curve.tolist()).mean()
        out.append(f"| {g} | W{b.replace('/', 'A')} | " + " → ".join(f"{v:.2f}" for v in curve) + " |")
    out += ["", "For orientation, the paper's QAT numbers (ImageNet top-1 %, GDFQ → DSG at W4A4, journal Table 4): "
            "ResNet-18 60.52 → 62.18, ResNet-50 55.65 → 71.96, MobileNetV2 51.30 → 60.46, "
            "InceptionV3 70.39 → 72.01.", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smallest settings, to check that everything runs")
    p.add_argument("--seeds", type=int, help="number of seeds (default 3; 1 with --quick)")
    p.add_argument("--bits", help="comma-separated W/A pairs (default 4/4,3/3,2/4; 4/4 with --quick)")
    p.add_argument("--model", default="resnet20_mnist")
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args()
    name = "quick" if args.quick else "full"
    profile = PROFILES[name]
    rows = Rows(rows_file(f"qat-{name}"), row_key)
    if not args.render_only:
        bits = args.bits.split(",") if args.bits else profile["bits"]
        run(args.model, profile, list(range(args.seeds or profile["seeds"])), bits, rows)
    write_doc("qat-quick.md" if args.quick else "qat.md", render(rows.rows, name, profile, args.model))


if __name__ == "__main__":
    main()
