"""bench/layer_jitter.py: the range that breaks a model alone is found from the rows, and the page's finding says
only what they show. Synthetic rows, no generation."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from dsg_core.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import layer_jitter as LJ  # noqa: E402 - bench/ is not a package: its path goes first

LAYERS = ("stem", "a", "b")


def row(variant: str, seed: int, alone: dict, spared: dict, ratio: dict, sweep: dict | None = None,
        top1: float = 98.0, all_scaled: float = 20.0, dense: list | None = None) -> dict:
    return dict(variant=variant, seed=seed, top1=top1, all_scaled=all_scaled, alone=alone, spared=spared,
                ratio=ratio, sweep=sweep or {n: [top1] * len(LJ.SWEEP) for n in LAYERS},
                sweep_factors=list(LJ.SWEEP), dense=dense or [top1] * len(LJ.DENSE), dense_factors=list(LJ.DENSE),
                code_version="x", source_hash="h", config_hash="c")


def one_culprit_rows() -> list[dict]:
    """`best` (no-sda) breaks when the stem's range alone is scaled (0.93 of real's); the former recipe keeps
    top-1 with a narrower stem range (0.6 of real's) down to x0.5."""
    flat = dict(a=97.5, b=97.9)
    out = []
    for s in (0, 1):
        out.append(row("no-sda", s, {"stem": 30.0 + s, **flat}, {"stem": 94.0, "a": 21.0, "b": 22.0},
                       {"stem": 0.93, "a": 0.9, "b": 0.9},
                       sweep={"stem": [10.0, 12.0, 20.0, 90.0, 98.0, 98.0], "a": [97.0] * 6, "b": [97.0] * 6}))
        out.append(row("reference", s, {"stem": 97.7, **flat}, {"stem": 96.0, "a": 96.0, "b": 96.0},
                       {"stem": 0.6, "a": 0.7, "b": 0.8}, all_scaled=96.0,
                       sweep={"stem": [97.0, 97.5, 97.6, 98.0, 98.0, 98.0], "a": [97.0] * 6, "b": [97.0] * 6}))
    return out


def test_the_culprit_is_the_range_whose_scaling_alone_costs_ten_points():
    rows = one_culprit_rows()
    assert LJ.culprits(rows) == ["stem"]
    assert LJ.culprits(rows, variant="reference") == []


def test_first_break_and_lowest_kept_read_the_sweep_from_the_calibrated_end():
    s = pd.Series({0.5: 10.0, 0.6: 12.0, 0.7: 20.0, 0.8: 30.0, 0.9: 90.0, 1.0: 98.0, 1.1: 98.0})
    assert LJ.first_break(s) == 0.8
    assert LJ.lowest_kept(s) == 0.9
    flat = pd.Series({0.5: 97.0, 0.8: 97.5, 1.0: 98.0})
    assert LJ.first_break(flat) is None and LJ.lowest_kept(flat) == 0.5


def test_the_finding_names_the_culprit_and_the_narrower_width_another_calibration_survives():
    page = LJ.render(one_culprit_rows())
    finding = page.split("**Finding:**")[1]
    assert "`stem` (activation range 1 of 3, in the model's order) costs `best` 67.5 points (98.0 -> 30.5)" in finding
    assert "keeps 94.0" in finding and "No other range alone costs it more than 0.5 points" in finding
    assert "breaks `best` (0.74 of real data's range)" in finding      # x0.8 * 0.93
    assert "Narrower still it stays broken (x0.5: 10.0)" in finding
    assert "reference (SDA) (0.30 of real data's at x0.5: 97.0)" in finding
    assert "| best | 10.0 | 12.0 | 20.0 | 30.5 | 90.0 | 98.0 | 98.0 | 98.0 | x0.8 = 0.74 of real data's |" in page


def test_without_a_single_culprit_the_finding_says_the_ranges_act_together():
    rows = [r for r in one_culprit_rows() if r["variant"] == "reference"]
    rows += [row("no-sda", 0, dict(stem=95.0, a=95.0, b=95.0), dict(stem=40.0, a=40.0, b=40.0),
                 dict(stem=0.9, a=0.9, b=0.9))]
    finding = LJ.render(rows).split("**Finding:**")[1]
    assert "no single range scaled alone costs `best` 10 points" in finding


def test_rows_of_two_code_versions_are_refused_unless_allowed():
    rows = one_culprit_rows()
    rows[0] = {**rows[0], "source_hash": "other"}
    with pytest.raises(DataError, match="2 code versions"):
        LJ.render(rows)
    page = LJ.render(rows, allow_mixed=True)
    assert "**Mixed code versions**" in page and "**Finding:**" in page


def test_a_recovery_at_a_narrower_range_is_called_the_grid_not_the_width():
    s = pd.Series({0.5: 97.0, 0.6: 40.0, 0.7: 96.5, 0.8: 30.0, 0.9: 97.0, 1.0: 98.0})
    text = LJ.shape_text(s, broke=0.8)
    assert text.startswith("It is not a slope") and "x0.5: 97.0, x0.7: 96.5" in text and "x0.6" not in text


def test_the_dense_grid_says_when_the_goals_three_factors_reverse_the_order():
    """`best` has one cliff at x0.8 (a third of the goal's mean, a thirteenth of the dense one); real data slopes
    down gently on both sides."""
    best = [98.0 if f != 0.8 else 20.0 for f in LJ.DENSE]
    real = [98.0 - 60 * abs(f - 1) for f in LJ.DENSE]
    full = dict(stem=95.0, a=95.0, b=95.0)
    rows = [row("no-sda", 0, full, full, dict(stem=0.9, a=0.9, b=0.9), dense=best),
            row("real", 0, full, full, dict(stem=1.0, a=1.0, b=1.0), dense=real)]
    text = " ".join(LJ.dense_finding(rows))
    assert "`best` averages 72.0 against real data's 90.0 (-18.0)" in text     # (20 + 98 + 98) / 3; (86 + 98 + 86) / 3
    assert "92.0 against 88.3 (+3.7)" in text                                 # 13 factors with x1
    assert "the denser grid reverses that order" in text and "best 20.0 at x0.8" in text
    assert "x0.7-x1.3" in LJ.render(rows)
    summary = " ".join(LJ.dense_summary(rows))
    assert "best at x0.8; real at x0.8" in summary                        # real: 98 - 60 * 0.2 = 86, 12 below
    assert "`best`'s cliff is the nearest to x1, and its lowest point is at x0.8 (20.0), one of the three" in summary
    assert "`best` is ahead of 1 of the other 1 sets by its mean (real 88.3, best 92.0)." in summary


def test_the_bundle_part_carries_every_seed_on_the_dense_grid_and_the_computed_findings(tmp_path):
    import gzip
    import json

    rows = one_culprit_rows()
    part = LJ.bundle_part(rows)
    grid = pd.DataFrame(part["grid"])
    assert set(grid.set) == {"Best", "Reference (SDA)"} and grid.groupby("set").seed.nunique().min() == 2
    assert sorted(grid.factor.unique()) == sorted([1.0, *LJ.DENSE])       # x1 is the calibrated top-1
    assert grid[(grid.factor == 1.0)].top1.tolist() == [98.0] * 4
    assert part["finding"][0].startswith("**What this shows:**")
    assert part["finding"][1].startswith("**Finding:** scaled alone by 0.8, `stem`")
    assert part["rows"] == {"bench/rows/layer-jitter.jsonl": {"h": ["x"]}} and part["goal_factors"] == [0.8, 1.0, 1.2]
    bundle = tmp_path / "b.json.gz"
    bundle.write_bytes(gzip.compress(json.dumps({"meta": {"commit": "c"}, "cells": [1]}).encode()))
    LJ.patch_bundle(bundle, "jitter_grid", part)
    d = json.loads(gzip.decompress(bundle.read_bytes()))
    assert d["meta"] == {"commit": "c"} and d["cells"] == [1] and d["jitter_grid"]["cell"] == "W3A3 adaround"
    mixed = [{**rows[0], "source_hash": "other"}, *rows[1:]]
    with pytest.raises(DataError):
        LJ.bundle_part(mixed)


def test_the_committed_bundle_says_what_the_committed_rows_say():
    """docs/data/evidence.json.gz's jitter grid is bench/rows/layer-jitter.jsonl's, findings included."""
    import json

    from dashboard.evidence_bundle import load

    rows = [json.loads(line) for line in LJ.rows_file("layer-jitter").read_text().splitlines() if line.strip()]
    assert load().jitter_grid == json.loads(json.dumps(LJ.bundle_part(rows)))


def test_docs_results_quotes_the_committed_rows():
    """docs/results.md's paragraph on the jitter miss: its numbers are the committed rows'."""
    import json

    rows = [json.loads(line) for line in LJ.rows_file("layer-jitter").read_text().splitlines() if line.strip()]
    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text().split())
    d = LJ.dense_table(rows)
    goal, dense = d[[0.8, 1.0, 1.2]].mean(axis=1), d.mean(axis=1)
    t = LJ.layer_table(rows)
    best = pd.DataFrame(rows).query("variant == 'no-sda'").top1.mean()
    loss = best - t.loc["relu.quant", ("alone", "no-sda")]
    assert f"costs `best` {loss:.1f} points ({best:.1f} to {t.loc['relu.quant', ('alone', 'no-sda')]:.1f})" in text
    assert f"that one spared it keeps {t.loc['relu.quant', ('spared', 'no-sda')]:.1f}" in text
    assert f"{goal['no-sda']:.1f} against real data's {goal['real']:.1f}" in text
    assert f"{dense['no-sda']:.1f} against {dense['real']:.1f}" in text
    assert f"(MCT {dense['mct']:.1f}; the former recipe with SDA {dense['reference']:.1f}" in text
    assert dense.idxmin() == "no-sda", "the paragraph calls `best` the least robust of the four"
