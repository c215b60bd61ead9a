"""Has a generation run converged? A loss curve judged on its own objective's terms.

ZeroQ's L2 levels off at a positive value; DSG's SDA hinge decays towards 0 as the last samples enter
the slack band, so it never "levels off" by a relative rule. Both are read here, so that a chart's
caption says "converged" only when the curve on screen shows it (docs/live-defaults.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 0.95  # plateau: the loss never again falls below 95% of its value
NEAR_END = 0.9    # a plateau later than 90% of the run: still falling when it stopped
NEAR_ZERO = 1e-3  # a loss below 1/1000 of its start has (for a hinge) reached its floor


def plateau(losses: list[float], tolerance: float = TOLERANCE) -> int:
    """The first iteration (1-based) after which the loss never drops below ``tolerance`` x its value."""
    v = np.asarray(losses, dtype=float)
    rest_min = np.minimum.accumulate(v[::-1])[::-1]  # min over [t, end]
    ok = rest_min >= tolerance * v
    return int(np.argmax(ok)) + 1 if ok.any() else len(v)


@dataclass(frozen=True)
class Convergence:
    plateau: int       # iteration at which the loss levelled off (``plateau``)
    iterations: int
    reduction: float   # final loss / first loss

    @property
    def levelled(self) -> bool:
        return self.plateau <= NEAR_END * self.iterations

    @property
    def near_zero(self) -> bool:
        return self.reduction <= NEAR_ZERO

    @property
    def converged(self) -> bool:
        """Levelled off before the end, or (a hinge) fallen to a thousandth of where it started."""
        return self.levelled or self.near_zero


def convergence(losses: list[float]) -> Convergence:
    v = [x for x in losses if np.isfinite(x)]
    if not v:
        return Convergence(0, 0, float("nan"))
    return Convergence(plateau(v), len(v), v[-1] / v[0] if v[0] else float("nan"))
