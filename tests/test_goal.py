"""Issue 18's goal as tests on seeds (``dsg_core.experiments.goal``): the one place docs/best.md's tables and
the dashboard's verdicts come from, so each test here can fail either way."""

import math

import pandas as pd

from dsg_core.experiments import goal


def seeds(top1, jitter=None) -> pd.DataFrame:
    return pd.DataFrame({"top1": top1, "jitter_mean": top1 if jitter is None else jitter})


def test_within_half_a_point_of_real_passes_and_further_below_fails():
    real = seeds([98.0, 98.0, 98.0])
    assert goal.cell_tests(seeds([97.6, 97.6, 97.6]), real, pd.DataFrame())["top1"] is True
    assert goal.cell_tests(seeds([97.4, 97.4, 97.4]), real, pd.DataFrame())["top1"] is False
    assert goal.cell_tests(seeds([99.0, 99.0, 99.0]), real, pd.DataFrame())["top1"] is True, "above real passes"
    low_jitter = goal.cell_tests(seeds([98.0] * 3, [90.0] * 3), real, pd.DataFrame())
    assert low_jitter["top1"] is True and low_jitter["jitter"] is False


def test_the_std_test_uses_the_population_std_and_unmeasured_tests_are_none():
    tests = goal.cell_tests(seeds([96.0, 98.0]), pd.DataFrame(), pd.DataFrame())  # population std 1.0
    assert tests["std"] is True and tests["top1"] is None and tests["jitter"] is None and tests["peer"] is None
    assert goal.cell_tests(seeds([95.9, 98.1]), pd.DataFrame(), pd.DataFrame())["std"] is False
    assert goal.met(tests), "a cell with nothing failed meets the goal"


def test_the_peer_test_reports_the_larger_shortfall_with_its_standard_error():
    best = seeds([98.0, 98.2], [90.0, 92.0])
    peer = seeds([97.0, 97.2], [95.0, 95.0])
    tests = goal.cell_tests(best, pd.DataFrame(), peer)
    gap = tests["peer_gap"]
    assert tests["peer"] is False and not goal.met(tests)
    assert gap.name == "jitter" and math.isclose(gap.gap, -4.0)
    assert math.isclose(gap.se, math.sqrt(2.0 / 2 + 0.0 / 2)), "var(ddof=1)/n summed over both sets"
    assert not gap.tie, "4 points behind at s.e. 1 is no tie"
    assert goal.PeerGap("top-1", -0.1, 0.07).tie and not goal.PeerGap("top-1", 0.1, 0.07).tie
    assert goal.std_text(1.04) == "1.04" and goal.std_text(2.83) == "2.8"
    assert goal.cell_tests(peer.assign(top1=99.0, jitter_mean=96.0), pd.DataFrame(), peer)["peer"] is True
