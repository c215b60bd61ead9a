"""Issue 18's goal for a data-free recipe, as tests on the top-1 of its seeds at one cell.

A recipe meets the goal at a cell (W3A3 or W4A4; min/max, DSG-avg or AdaRound) when its mean top-1 is
within ``WITHIN`` points of real-data calibration or above it, its std over seeds is at most ``MAX_STD``,
its range-jitter mean (top-1 with every activation range scaled by 0.8, 1.0 and 1.2, averaged) is
within ``WITHIN`` of real data's, and neither mean is below the peer's (MCT's generator). One module,
so ``bench/best.py``'s tables and the dashboard's Evidence page give the same verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

WITHIN, MAX_STD = 0.5, 1.0  # points of top-1: the goal's tolerance against real data, and its std over seeds
# The goal's cells as (wbits, abits, quantizer), the one spelling every caller derives its own from
# (``bits_text``, ``width_name``, ``cell_name``); the range-rule cells are those without reconstruction.
GOAL_CELLS = ((3, 3, "minmax"), (3, 3, "dsg-avg"), (3, 3, "adaround"),
              (4, 4, "minmax"), (4, 4, "dsg-avg"), (4, 4, "adaround"))
RANGE_CELLS = ((3, 3, "minmax"), (3, 3, "dsg-avg"), (4, 4, "dsg-avg"), (4, 4, "minmax"))


def bits_text(wbits: int, abits: int) -> str:
    """(3, 3) -> "3/3": the result rows' and the CLI's spelling of a bit-width."""
    return f"{wbits}/{abits}"


def width_name(wbits: int | str, abits: int | str) -> str:
    """(3, 3) -> "W3A3": the pages' and the dashboard's spelling of a bit-width."""
    return f"W{wbits}A{abits}"


def cell_name(bits: str, quantizer: str) -> str:
    """("3/3", "minmax") -> "W3A3 minmax"."""
    return f"{width_name(*bits.split('/'))} {quantizer}"


@dataclass(frozen=True)
class PeerGap:
    """The larger shortfall against the peer: which mean (``top-1`` or ``jitter``), best minus peer, and
    the standard error of that difference of means over seeds (NaN with one seed)."""
    name: str
    gap: float
    se: float

    @property
    def ok(self) -> bool:
        return self.gap >= 0

    @property
    def tie(self) -> bool:
        """A shortfall under two standard errors of the difference: a tie in the noise."""
        return not self.ok and -self.gap < 2 * self.se


def against_real(top1: pd.Series, jitter: pd.Series, real_top1: pd.Series, real_jitter: pd.Series) -> dict:
    """The goal's three tests against real data: top-1 and jitter mean within WITHIN of real data's or
    above (None without real rows), std over seeds at most MAX_STD (population std, as the tables show)."""
    have = not real_top1.empty
    return dict(top1=bool(top1.mean() >= real_top1.mean() - WITHIN) if have else None,
                std=bool(top1.std(ddof=0) <= MAX_STD),
                jitter=bool(jitter.mean() >= real_jitter.mean() - WITHIN) if have else None)


def versus_peer(best: pd.DataFrame, peer: pd.DataFrame) -> PeerGap | None:
    """The goal's test against the peer (top-1 and jitter mean both at least the peer's): the larger
    shortfall, so that a tie in the noise can be read as one; None where the peer was not run."""
    if peer.empty or best.empty:
        return None
    gaps = {}
    for name, col in (("top-1", "top1"), ("jitter", "jitter_mean")):
        se = (math.sqrt(best[col].var(ddof=1) / len(best) + peer[col].var(ddof=1) / len(peer))
              if min(len(best), len(peer)) > 1 else float("nan"))
        gaps[name] = PeerGap(name, float(best[col].mean() - peer[col].mean()), se)
    return min(gaps.values(), key=lambda g: g.gap)


def std_text(std: float) -> str:
    """A std over seeds for the std test, with a second decimal where one would read as its limit."""
    return f"{std:.2f}" if round(std, 1) == MAX_STD else f"{std:.1f}"


def cell_tests(best: pd.DataFrame, real: pd.DataFrame, peer: pd.DataFrame) -> dict:
    """All four tests of one cell (rows with ``top1`` and ``jitter_mean``, one per seed): True, False,
    or None where not measured; ``peer_gap`` the :class:`PeerGap` behind the peer's test."""
    tests = against_real(best.top1, best.jitter_mean, real.top1 if len(real) else pd.Series(dtype=float),
                         real.jitter_mean if len(real) else pd.Series(dtype=float))
    gap = versus_peer(best, peer)
    return {**tests, "peer": None if gap is None else gap.ok, "peer_gap": gap}


def met(tests: dict) -> bool:
    """A cell meets the goal when no measured test fails."""
    return all(tests[k] is not False for k in ("top1", "std", "jitter", "peer"))
