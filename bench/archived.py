"""A rerun beside an archived reproduction page: which cells moved (issue 18, item 2).

    python bench/archived.py --profile quick --archived docs/results-quick-2026-11-26.md
    python bench/archived.py --profile full --against quick --quantizers adaround,brecq   # two profiles
    python bench/archived.py --profile control-full --against full --quantizers minmax,dsg-avg \
        --sources gaussian,zeroq,dsg,real   # the same seeds on two machines

The 2026-11-26 pages were rendered from rows that are no longer on this machine and predate the
provenance stamps, so the only record of them is their markdown. This reads its tables (mean ± std
[min, max] per source, quantizer and width) and sets each beside the same cell of the rerun's rows
(`bench/rows/<profile>.jsonl`, the seeds the rerun has), printing a markdown table of every cell
whose mean moved by more than the larger of the two seed spreads (and at least one point): a change
the seeds cannot explain. The archived cells may have more seeds (5-9 were added where cells swing).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd
from common import rows_file

from dsg_core.experiments.goal import cell_name
from dsg_core.sources import REPRODUCTION

CELL = re.compile(r"(-?[\d.]+) ± ([\d.]+)")


def archived_cells(path: Path) -> pd.DataFrame:
    """Every table cell of a reproduction page: model, quantizer, source, bits, mean, std."""
    out, model, quantizer, bits = [], None, None, []
    for line in path.read_text().splitlines():
        if line.startswith("## ") and "(FP32" in line:
            model = line[3:].split(" ")[0]
        elif line.startswith("### quantizer"):
            quantizer = line.split("`")[1]
        elif line.startswith("| source | n |"):
            bits = [c.strip()[1:].replace("A", "/") for c in line.strip("|").split("|")[2:]]
        elif line.startswith("| ") and model and quantizer and bits and not line.startswith("| source"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for b, c in zip(bits, cells[2:]):
                m = CELL.match(c)
                if m:
                    out.append(dict(model=model, quantizer=quantizer, source=cells[0], bits=b,
                                    mean=float(m.group(1)), std=float(m.group(2))))
        elif line.startswith("## "):
            model, quantizer, bits = None, None, []
    return pd.DataFrame(out)


def rerun_cells(path: Path) -> pd.DataFrame:
    """Mean, std and seeds of every cell of the rerun's rows with pixels as generated (what a reproduction page
    shows; a pixel-range profile also has clamped and clipped sets), one row per key as the page renders them."""
    from reproduce import frame  # here: it loads the engine, which the page parsing does not need
    df = frame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    g = df[(df.kind == "main") & (df.pixel_range == "free")].groupby(["model", "quantizer", "source", "bits"]).top1
    stats = [g.mean().rename("mean"), g.std(ddof=0).rename("std"), g.count().rename("n")]
    return pd.concat(stats, axis=1).reset_index()


def moved(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the cells of both, those whose means differ by more than max(1, either spread))."""
    both = old.merge(new, on=["model", "quantizer", "source", "bits"], suffixes=(" archived", " rerun"))
    both["change"] = both["mean rerun"] - both["mean archived"]
    limit = both[["std archived", "std rerun"]].max(axis=1).clip(lower=1.0)
    return both, both[both.change.abs() > limit]


def against(rows: Path, other: Path, quantizers: list[str], sources: list[str] | None = None) -> list[str]:
    """A markdown table of every ``quantizers`` cell two profiles' rows share (of ``sources``, default all), one
    line per model, width and quantizer, one column per source: "this (n) / other (n)" means, and the change
    where it exceeds the larger seed spread (and 1 point), as ``moved`` counts it."""
    both, _ = moved(rerun_cells(other), rerun_cells(rows))  # "archived" = the other profile
    both = both[both.quantizer.isin(quantizers)].sort_values(["model", "bits", "quantizer"],
                                                             ascending=[False, False, True])
    sources = [s for s in REPRODUCTION if s in set(both.source) and (sources is None or s in sources)]
    out = ["| model, cell | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for (model, bits, q), g in both.groupby(["model", "bits", "quantizer"], sort=False):
        cells = []
        for source in sources:
            r = g[g.source == source]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            moved_by = max(1.0, r["std archived"], r["std rerun"])
            change = f" **{r.change:+.1f}**" if abs(r.change) > moved_by else ""
            cells.append(f"{r['mean rerun']:.1f} ± {r['std rerun']:.1f} ({r['n rerun']}) / "
                         f"{r['mean archived']:.1f} ({r['n archived']}){change}")
        out.append(f"| {model.split('_')[0]}, {cell_name(bits, q)} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--archived", type=Path, help="an archived page of the profile")
    ap.add_argument("--against", help="instead, another profile's rows (e.g. quick)")
    ap.add_argument("--quantizers", default="adaround,brecq", help="with --against: the quantizers to show")
    ap.add_argument("--sources", help="with --against: the sources to show (default: every one both profiles have)")
    args = ap.parse_args()
    rows = rows_file(args.profile)
    if args.against:
        for path in (rows, rows_file(args.against)):
            if not path.is_file():
                raise SystemExit(f"no rows for that profile: {path}")
        sources = args.sources.split(",") if args.sources else None
        if sources and set(sources) - set(REPRODUCTION):
            raise SystemExit(f"not a source of the reproduction: {', '.join(sorted(set(sources) - set(REPRODUCTION)))} "
                             f"(they are {', '.join(REPRODUCTION)})")
        print("\n".join(against(rows, rows_file(args.against), args.quantizers.split(","), sources)))
        return
    if args.archived is None:
        raise SystemExit("give --archived PAGE or --against PROFILE")
    for path, what in ((args.archived, "the archived page"), (rows, f"the {args.profile} profile's rows")):
        if not path.is_file():
            raise SystemExit(f"{what} not found: {path}")
    both, out = moved(archived_cells(args.archived), rerun_cells(rows))
    print(f"{len(both)} cells in both; {len(out)} moved by more than the larger seed spread (and 1 point):\n")
    print("| model | quantizer | source | bits | archived | rerun (n) | change |\n|---|---|---|---|---|---|---|")
    for _, r in out.sort_values(["model", "quantizer", "bits", "source"]).iterrows():
        print(f"| {r.model} | {r.quantizer} | {r.source} | W{r.bits.replace('/', 'A')} | {r['mean archived']:.1f} ± "
              f"{r['std archived']:.1f} | {r['mean rerun']:.1f} ± {r['std rerun']:.1f} ({r.n}) | {r.change:+.1f} |")


if __name__ == "__main__":
    main()
