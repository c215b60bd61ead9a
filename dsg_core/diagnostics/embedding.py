"""2-D embeddings of penultimate features: PCA (instant) and t-SNE (seconds), cached by content.

All sets are embedded together so their points share one map. t-SNE preserves neighbourhoods, not
distances or cluster sizes: read it for "which points sit together", never for "how far apart".
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import pandas as pd
import torch

_CACHE: "OrderedDict[str, np.ndarray]" = OrderedDict()
_CACHE_SIZE = 32
METHODS = ("pca", "tsne")


def _key(x: np.ndarray, method: str, seed: int, perplexity: float) -> str:
    h = hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    h.update(f"{method}/{seed}/{perplexity}/{x.shape}".encode())
    return h.hexdigest()


def embed(x: np.ndarray, method: str = "pca", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, D) -> (N, 2). Results are cached by the features' bytes, so replotting costs nothing."""
    if method not in METHODS:
        raise ValueError(f"embedding method must be one of {METHODS}, not {method!r}")
    key = _key(x, method, seed, perplexity)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    if method == "pca":
        from sklearn.decomposition import PCA
        out = PCA(n_components=2, random_state=seed).fit_transform(x)
    else:
        from sklearn.manifold import TSNE
        out = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), init="pca",
                   random_state=seed).fit_transform(x)
    _CACHE[key] = out
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def embedding_frame(features: dict[str, torch.Tensor], predictions: dict[str, torch.Tensor],
                    method: str = "pca", seed: int = 0) -> pd.DataFrame:
    """One frame (set, class, x, y) with every set embedded jointly."""
    names = list(features)
    stacked = torch.cat([features[n] for n in names]).double().numpy()
    xy = embed(stacked, method, seed)
    sizes = [len(features[n]) for n in names]
    return pd.DataFrame({"set": np.repeat(names, sizes), "class": torch.cat([predictions[n] for n in names]).numpy(),
                         "x": xy[:, 0], "y": xy[:, 1]})
