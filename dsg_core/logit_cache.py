"""The FP32 model's logits on the test images, kept on disk between processes.

Every ``quantize`` call scores the quantized model against the same FP32 reference: one pass of the
full-precision model over the 1,000 test images, about 1.2 s of a 2-core machine's arithmetic and
half of a min/max quantize. The reference only changes when the model or the images do, so it is
keyed by both: each module's class (and the file that defines it), its plain settings and every
tensor it holds, the images, and the versions of torch and dsg_core. Only eager modules on the CPU
are cached:
a TorchScript or exported program (code the key cannot see whole) and a GPU (whose TF32 and cuDNN
switches change the logits, and where the pass takes milliseconds) are always computed. Plain .npy
files, read without pickle; a cache that cannot be read or written only means computing again.
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .evaluate import logits
from .fsutil import atomic_write_bytes, cache_dir, npy_bytes

SCHEMA = 1  # raise when what the key covers changes
MAX_FILES = 256  # oldest dropped beyond this: ~40 KB each for 1,000 images x 10 classes


@lru_cache(maxsize=None)
def _class_digest(cls: type) -> str:
    """The class's name and the source file that defines it: a changed ``forward`` must miss the
    cache. torch's own classes are covered by torch's version."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__.split(".")[0] == "torch":
        return name
    try:
        src = Path(sys.modules[cls.__module__].__file__).read_bytes()
    except (KeyError, AttributeError, TypeError, OSError):  # defined where no file is kept
        src = b""
    return f"{name}:{hashlib.sha256(src).hexdigest()}"


def _update(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def cacheable(model: nn.Module, x: torch.Tensor) -> bool:
    """Eager modules on the CPU: everything their output depends on is visible to ``fingerprint``."""
    programs = (torch.jit.ScriptModule, torch.fx.GraphModule)
    return x.device.type == "cpu" and not any(isinstance(m, programs) for m in model.modules())


def fingerprint(model: nn.Module, x: torch.Tensor) -> str:
    """A digest of everything the logits of the eager ``model`` on ``x`` depend on."""
    h = hashlib.sha256(f"{SCHEMA}|{__version__}|{torch.__version__}|{x.device.type}|{model!r}".encode())
    for name, m in model.named_modules():
        settings = {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"}
        h.update(f"{name}|{_class_digest(type(m))}|".encode())
        for k in sorted(settings):
            v = settings[k]
            if isinstance(v, torch.Tensor):  # a tensor attribute neither parameter nor buffer
                h.update(k.encode())
                _update(h, v)
            else:
                h.update(f"{k}={v!r}".encode())
        for k, t in (*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)):
            h.update(k.encode())
            _update(h, t)
    _update(h, x)
    return h.hexdigest()[:24]


def fp32_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``logits(model, x)``, read from the cache when the same model has scored the same images before."""
    path = _path(model, x)
    if path is not None:
        try:
            z = np.load(path, allow_pickle=False)
            if z.dtype == np.float32 and z.ndim == 2 and z.shape[0] == x.shape[0]:
                return torch.from_numpy(z)
        except Exception:  # noqa: BLE001 - missing, truncated or foreign: compute again
            pass
    z = logits(model, x, batch_size)
    if path is not None and z.dtype == torch.float32 and z.dim() == 2 and torch.isfinite(z).all():
        try:
            atomic_write_bytes(path, npy_bytes(z.numpy()))
            _prune(path.parent)
        except Exception:  # noqa: BLE001 - read-only or full disk: the cache is optional
            pass
    return z


def _path(model: nn.Module, x: torch.Tensor) -> Path | None:
    """The cache file for this model and these images; None where there is no cache to use."""
    if not cacheable(model, x):
        return None
    try:
        return cache_dir() / "logits" / f"{fingerprint(model, x)}.npy"
    except Exception:  # noqa: BLE001 - no home folder, or a tensor that cannot be read as bytes
        return None


def _prune(folder: Path) -> None:
    """Keep the MAX_FILES newest files; a race with another process deleting the same one is harmless."""
    files = sorted(folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
    for old in files[:-MAX_FILES]:
        old.unlink(missing_ok=True)
