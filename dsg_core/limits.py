"""Resource limits: how much one request may make the server (or a CLI run) hold, checked before work.

A shared dashboard on a small machine must not be exhausted by one upload or one job, so every
quantity a user controls has a ceiling here, with a safe default that a deployment can raise
through the environment (``DSG_LIMIT_<FIELD>``, e.g. ``DSG_LIMIT_DECODED_BYTES=2147483648``).
Each limit is enforced *before* the work it bounds (the zip's directory before extraction, image
headers before decoding, samples x iterations before a job starts) and is refused, never warned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .errors import ConfigError

MiB = 2**20


@dataclass(frozen=True)
class Limits:
    images: int = 2_000                 # files in an uploaded zip / images decoded from one folder
    unzipped_bytes: int = 256 * MiB     # an uploaded zip's members, unpacked
    image_pixels: int = 40_000_000      # one image (a 6300x6300 photo); PIL only *warns* below 2x its own guard
    total_pixels: int = 400_000_000     # all images of one folder, as stored (decoding cost)
    decoded_bytes: int = 512 * MiB      # all images of one folder in the model's input size, float32
    set_bytes: int = 2048 * MiB         # one synthetic set's images (samples x C x H x W x 4)
    job_steps: int = 2_000_000          # samples x iterations of one background job
    jobs: int = 2                       # background jobs running at once on a server


def limits() -> Limits:
    """The defaults, with any ``DSG_LIMIT_<FIELD>`` environment override (a positive integer)."""
    over = {}
    for f in fields(Limits):
        text = os.environ.get(f"DSG_LIMIT_{f.name.upper()}")
        if text is None:
            continue
        try:
            over[f.name] = int(text)
        except ValueError:
            raise ConfigError(f"DSG_LIMIT_{f.name.upper()} must be a whole number, not {text!r}") from None
        if over[f.name] < 1:
            raise ConfigError(f"DSG_LIMIT_{f.name.upper()} must be positive, not {text!r}")
    return Limits(**over)


def check_set_size(samples: int, input_shape: tuple[int, ...], limit: int | None = None) -> None:
    """Refuse a synthetic set whose images alone exceed ``set_bytes`` (before any allocation)."""
    limit = limits().set_bytes if limit is None else limit
    per_image = 4
    for d in input_shape:
        per_image *= d
    if samples * per_image > limit:
        raise ConfigError(f"{samples} samples of {tuple(input_shape)} would take "
                          f"{samples * per_image / 2**30:.1f} GiB; "
                          f"the limit for one set is {limit / 2**30:.1f} GiB ({limit // per_image} samples): "
                          "make several sets, or raise DSG_LIMIT_SET_BYTES")
