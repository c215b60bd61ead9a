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
    df = pd.DataFrame(rows(*B.BEST, "m", (0, 1, 2), 98.0, 97.0, B.GOAL_CELLS)
                      + rows("real", "free", "m", (0, 1, 2), 99.0, 96.0, B.GOAL_CELLS[:2]))
    mct = pd.DataFrame(rows("mct", "free", "m", (0, 1, 2), 97.0, 99.0, B.GOAL_CELLS[:1]))
    lines = B.goal_lines("m", df, mct)
    first = lines[4].split(" | ")
    assert first[-4:] == ["**no**", "yes", "yes", "**no** (jitter -2.00 ± 0.82 s.e.) |"]  # 1 below real; jitter < MCT
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


def test_why_shows_the_jitter_trend_only_where_best_misses_real():
    def with_factors(source, pixels, top1, at08, at12):
        return [{**r, "at 0.8": at08, "at 1.2": at12} for r in rows(source, pixels, "m", (0, 1), top1, top1,
                                                                  B.GOAL_CELLS[:2])]
    df = pd.DataFrame(with_factors(*B.BEST, 94.0, 85.0, 97.0)
                      + with_factors("real", "free", 96.0, 98.0, 93.0))
    ratios = pd.Series({("m", *B.BEST): 0.58})
    lines = B.why_lines(df, ratios)
    assert lines[0] == "## Why it falls short"
    table = [line for line in lines if line.startswith("| m |")]
    assert len(table) == 2
    assert "| 85.0 / 94.5 / 97.0 | 98.0 / 96.5 / 93.0 | 0.58 | climbs as every range widens |" in table[0]
    assert "`docs/layer-jitter.md` scales" in lines[-2], "the trend is every range at once: where to see one alone"
    level = pd.DataFrame(with_factors(*B.BEST, 96.0, 85.0, 97.0)
                         + with_factors("real", "free", 96.0, 98.0, 93.0))
    assert B.why_lines(level, ratios) == []  # within 0.5 of real everywhere: nothing to explain


def test_goal_rows_are_recipes_no_sda_rows_named_best(tmp_path):
    import json
    recipes = [dict(model="m", variant=v, seed=0, cell="W3A3 adaround", top1=t, jitter_mean=t - 1,
                    **{"at_0.8": t - 2, "at_1": t, "at_1.2": t + 1}) for v, t in
               (("no-sda", 97.0), ("reference", 95.0), ("real", 98.0), ("no-ce", 10.0))]
    recipes += [dict(model="m", variant=v, seed=0, cell=None, range_ratio=r) for v, r in (("no-sda", 0.9),
                                                                                          ("real", 1.0))]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recipes))
    goal, ratios = B.recipe_rows(path)
    best = goal[(goal.source == B.BEST[0]) & (goal.pixel_range == B.BEST[1])]
    assert best[["bits", "quantizer", "top1", "jitter_mean", "at 0.8", "at 1.2"]].values.tolist() == [
        ["3/3", "adaround", 97.0, 96.0, 95.0, 98.0]]
    assert set(goal.source) == {"best", "dsg-reference", "real"}  # other variants are recipes.md's only
    assert ratios[("m", *B.BEST)] == 0.9
    lines = B.goal_lines("m", goal, pd.DataFrame(columns=goal.columns), title="m (held out)")
    assert lines[0] == "### m (held out)" and "| W3A3 adaround | 97.0 ± 0.0 (n=1) | 98.0 ± 0.0 (n=1) |" in lines[6]


def test_mct_is_held_against_best_with_the_same_reconstruction_steps_only():
    def step_rows(source, steps, top1):
        return [{**r, "recon_iters": steps} for r in rows(source, "free", "m", (0, 1), top1, top1, B.GOAL_CELLS[2:3])]
    peers = pd.DataFrame(step_rows("mct", 200, 99.0) + step_rows("mct", 100, 97.0) + step_rows("best", 200, 98.0)
                         + rows("mct", "free", "m", (0, 1), 90.0, 90.0, B.GOAL_CELLS[:1]))
    kept = B.like_recipes(peers)
    assert sorted(kept.recon_iters.fillna(0).unique()) == [0, 100]  # range-rule rows and 100-step AdaRound rows
    side = [line for line in B.peers_lines(peers) if line.startswith("| W3A3 adaround")]
    assert side == ["| W3A3 adaround (200 steps) | 98.5 ± 0.5 (n=2) (98.5) | 99.5 ± 0.5 (n=2) (99.5) | - | - |"]


def test_real_datas_own_spread_is_listed_only_where_it_fails_the_std_test():
    df = pd.DataFrame(rows(*B.BEST, "m", (0, 1), 98.0, 98.0, B.GOAL_CELLS[:1])      # std 0.5
                      + rows("real", "free", "m", (0, 3), 90.0, 90.0, B.GOAL_CELLS[:1])  # std 1.5
                      + rows(*B.BEST, "m", (0, 1), 98.0, 98.0, B.GOAL_CELLS[1:2])
                      + rows("real", "free", "m", (0, 1), 98.0, 98.0, B.GOAL_CELLS[1:2]))  # real steady: not listed
    lines = B.spread_lines(df)
    assert [line for line in lines if line.startswith("| W")] == ["| W3A3 minmax | m | 1.5 | 0.5 |"]
    assert B.spread_lines(df[df.source == "real"]) == [] and B.spread_lines(df[df.seed < 2].assign(top1=98.0)) == []
