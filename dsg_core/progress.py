"""Progress reporting and cancellation shared by every long-running engine function.

Long work (generation, reconstruction, QAT) takes an optional ``progress`` callback, called with a
:class:`Progress` record, and an optional ``cancel`` callable; when ``cancel()`` returns True the
work stops at the next step and raises :class:`~dsg_core.errors.Cancelled`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import Cancelled


@dataclass
class Progress:
    stage: str            # "generate", "adaround", "brecq", ...
    step: int             # 1-based step within the stage
    total: int            # number of steps in the stage
    loss: float = float("nan")
    parts: dict[str, float] = field(default_factory=dict)  # named loss components
    extra: dict = field(default_factory=dict)              # e.g. per-layer losses

    @property
    def fraction(self) -> float:
        return self.step / max(self.total, 1)


ProgressFn = Optional[Callable[[Progress], None]]
CancelFn = Optional[Callable[[], bool]]


def check_cancel(cancel: CancelFn, partial=None) -> None:
    """Raise Cancelled if the user asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled(partial=partial)
