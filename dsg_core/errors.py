"""The project's own error types.

Every failure a user can cause (bad config, wrong file, model without BatchNorm, NaN during
optimization, cancellation) is raised as a subclass of :class:`DSGError` with a message that says
what went wrong and what to do. The CLI and the dashboard catch ``DSGError`` and show the message;
anything else is a bug.
"""


class DSGError(Exception):
    """Base class: a problem the user can understand and fix."""


class ConfigError(DSGError, ValueError):
    """A setting is out of range or inconsistent (epsilon outside (0, 1], bits of 9, ...)."""


class ModelError(DSGError):
    """A model cannot be used: unknown name, no BatchNorm, weights unavailable, unsupported layer."""


class DataError(DSGError):
    """A file or data set is unreadable, foreign, corrupt or does not fit the model."""


class NumericalError(DSGError):
    """NaN/Inf appeared during optimization; ``last_good`` keeps the last finite state."""

    def __init__(self, message: str, iteration: int | None = None, last_good=None):
        super().__init__(message)
        self.iteration = iteration
        self.last_good = last_good


class Cancelled(DSGError):
    """The user cancelled a long run; ``partial`` keeps what was done so far (may be None)."""

    def __init__(self, message: str = "cancelled by the user", partial=None):
        super().__init__(message)
        self.partial = partial
