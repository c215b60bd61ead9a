"""bench/best.py: the ranking that chose the best preset, and the goal's checks, from result rows."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import best as B  # noqa: E402 - bench/ is not a package: its path goes first


def rows(source, pixel_range, model, seeds, top1, jitter, cells=B.RANGE_CELLS):
    return [dict(model=model, source=source, pixel_range=pixel_range, seed=s, bits=b, quantizer=q,
                 top1=top1 + s, jitter_mean=jitter + s) for s in seeds for b, q in cells]


def test_ranking_scores_full_seeds_only_and_needs_every_model():
    df = pd.DataFrame(rows("dsg-reference", "clamp-after", "a", (0, 1), 90, 95)
                      + rows("dsg-reference", "clamp-after", "b", (0,), 90, 85)
                      + rows("zeroq", "free", "a", (0, 1), 50, 99)
                      + rows("real", "free", "b", (0,), 90, 70)[:3])  # a seed without all four cells: left out
    table = B.ranking(df)
    assert list(table.index[:1]) == [("dsg-reference", "clamp-after")]
    assert table.loc[("dsg-reference", "clamp-after"), "a"] == 95.5 and table.loc[("dsg-reference", "clamp-after"),
                                                                                  "mean over models"] == 90.25
    assert pd.isna(table.loc[("zeroq", "free"), "mean over models"])  # not measured on model b
    assert ("real", "free") not in table.index
    lines = B.ranking_lines(table)
    assert lines[2].startswith("| 1 | **DSG reference** | clamped after | 95.5 (2) | 85.0 (1) | **90.2**")


def test_goal_checks_fail_where_the_numbers_do():
    df = pd.DataFrame(rows("dsg-reference", "clamp-after", "m", (0, 1, 2), 98.0, 97.0, B.GOAL_CELLS)
                      + rows("real", "free", "m", (0, 1, 2), 99.0, 96.0, B.GOAL_CELLS[:2]))
    mct = pd.DataFrame(rows("mct", "free", "m", (0, 1, 2), 97.0, 99.0, B.GOAL_CELLS[:1]))
    lines = B.goal_lines("m", df, mct)
    first = lines[4].split(" | ")
    assert first[-4:] == ["**no**", "yes", "yes", "**no** |"]  # 1 point below real; jitter below MCT's
    assert lines[5].endswith("not measured |")  # no MCT row at that cell
    assert "| - |" in lines[7]  # real not run there: no check claimed against it
    assert lines[7].split(" | ")[-4:] == ["not measured", "yes", "not measured", "not measured |"]


def test_peers_table_only_where_best_ran_in_the_peers_run():
    peers = pd.DataFrame(rows("best", "free", "resnet20_mnist", (0, 1), 90.0, 80.0, B.GOAL_CELLS[:1])
                         + rows("mct", "free", "resnet20_mnist", (0, 1), 80.0, 70.0, B.GOAL_CELLS[:2]))
    lines = B.peers_lines(peers)
    assert [line.split(" | ")[0] for line in lines if line.startswith("| W")] == ["| W3A3 minmax"]
    assert "| 90.5 ± 0.5 (n=2) (80.5) | 80.5 ± 0.5 (n=2) (70.5) | - | - |" in lines[-2]
    assert B.peers_lines(peers[peers.source == "mct"]) == []
    other = peers.assign(model="other", top1=peers.top1 - 10)  # a second model: its own table, never pooled
    both = B.peers_lines(pd.concat([peers, other]))
    assert sum(line.startswith("| W3A3 minmax") for line in both) == 2 and "(n=4)" not in "".join(both)


def test_why_names_too_narrow_ranges_only_where_best_misses_real():
    def with_factors(source, pixels, top1, at08, at12):
        return [{**r, "at 0.8": at08, "at 1.2": at12} for r in rows(source, pixels, "m", (0, 1), top1, top1,
                                                                  B.GOAL_CELLS[:2])]
    df = pd.DataFrame(with_factors("dsg-reference", "clamp-after", 94.0, 85.0, 97.0)
                      + with_factors("real", "free", 96.0, 98.0, 93.0))
    ratios = pd.Series({("m", "dsg-reference", "clamp-after"): 0.58})
    lines = B.why_lines(df, ratios)
    assert lines[0] == "## Why it falls short"
    table = [line for line in lines if line.startswith("| m |")]
    assert len(table) == 2
    assert "| 85.0 / 94.5 / 97.0 | 98.0 / 96.5 / 93.0 | 0.58 | climbs as the ranges widen" in table[0]
    level = pd.DataFrame(with_factors("dsg-reference", "clamp-after", 96.0, 85.0, 97.0)
                         + with_factors("real", "free", 96.0, 98.0, 93.0))
    assert B.why_lines(level, ratios) == []  # within 0.5 of real everywhere: nothing to explain
