"""Files on disk: writes that never leave half a file behind (a crash or a full disk mid-write keeps
the old file, or none, never a truncated one that a later load would misread), and the folder of the
optional caches."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """$DSG_CACHE, else $XDG_CACHE_HOME/dsg_lab, else ~/.cache/dsg_lab."""
    if os.environ.get("DSG_CACHE"):
        return Path(os.environ["DSG_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsg_lab"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as the bytes of a .npy file: plain arrays, read back with ``allow_pickle=False``."""
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()
