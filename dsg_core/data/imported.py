"""Sets made by other tools, imported as synthetic sets: an image folder, a ``.npy`` array or a
safetensors file, validated like a generated set and marked as imported.

Pixel units: images from a folder go through the model's own preprocessing (channels, size,
``ModelSpec`` mean/std). An array holds pixels in [0, 1] (float) or 0..255 (uint8) and is
normalized the same way, unless ``normalized``: then it is already in model-input space, as a DSG
set is. Nothing is unpickled: ``np.load(allow_pickle=False)``, safetensors and PIL only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..generation.synthetic_set import FORMAT, SyntheticSet
from ..limits import check_set_size
from ..models import ModelSpec
from ..provenance import DIGITS
from .folder import load_images

KINDS = {".npy": "npy", ".safetensors": "safetensors"}


def import_set(path: str | Path, spec: ModelSpec, *, label: str, normalized: bool = False) -> SyntheticSet:
    """The images at ``path`` as a synthetic set for the model ``spec``, labelled ``label``, with
    the import's provenance (source name, file hash, date) in its config."""
    path = Path(path)
    if not label.strip():
        raise DataError("give the imported set a label (--label), e.g. the tool that made it")
    if path.is_dir():
        kind, (images, targets), normalized = "folder", load_images(path, spec), False
    elif not path.is_file():
        raise DataError(f"nothing to import at {path.name or path}: give an image folder, a .npy or a "
                        ".safetensors file")
    elif path.suffix.lower() not in KINDS:
        raise DataError(f"{path.name}: unknown kind of file {path.suffix!r}; give an image folder, a .npy array "
                        "or a .safetensors file")
    else:
        kind = KINDS[path.suffix.lower()]
        images, targets, normalized = _read_array(path, spec, kind, normalized)
    images = _checked(images, spec, path.name)
    config = {"imported": True, "label": label.strip(), "kind": kind, "source": path.name,
              "file_hash": content_hash(path), "normalized": normalized,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    return SyntheticSet(images=images, model=spec.name, config=config, targets=targets)


def _read_array(path: Path, spec: ModelSpec, kind: str, normalized: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """(images in model-input space, targets or None, whether the file was normalized already)."""
    targets = None
    if kind == "npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # the header first: shape before reading
        except (ValueError, OSError) as exc:
            raise DataError(f"{path.name} is not a readable .npy array of numbers ({exc})") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise DataError(f"{path.name} is not a .npy array of numbers")
        _check_shape(array.shape, spec, path.name)
        images = torch.from_numpy(np.array(array, dtype=array.dtype.newbyteorder("=")))
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load
        data = path.read_bytes()
        try:
            tensors = load(data)
        except (SafetensorError, ValueError, RuntimeError):
            raise DataError(f"{path.name} is not a readable safetensors file") from None
        if _is_dsg_set(data):  # a DSG set: model-input space already, with its own targets
            dsg = SyntheticSet.from_bytes(data, path.name)
            images, targets, normalized = dsg.images, dsg.targets, True
        elif "images" in tensors or len(tensors) == 1:
            images = tensors.get("images", next(iter(tensors.values()), None))
        else:
            raise DataError(f"{path.name} holds {len(tensors)} tensors ({', '.join(sorted(tensors)[:4])}...): "
                            "name the images 'images'")
        _check_shape(tuple(images.shape), spec, path.name)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images.float() if normalized else _normalize(images, spec, path.name)), targets, normalized


def _is_dsg_set(data: bytes) -> bool:
    n = int.from_bytes(data[:8], "little")
    try:
        return (json.loads(data[8:8 + n]).get("__metadata__") or {}).get("format") == FORMAT
    except ValueError:
        return False


def _check_shape(shape: tuple[int, ...], spec: ModelSpec, name: str) -> None:
    """(N, C, H, W) as the model takes, or (N, H, W) for a one-channel model; within the set size limit."""
    c, h, w = spec.input_shape
    fits = (len(shape) == 4 and tuple(shape[1:]) == (c, h, w)) or (len(shape) == 3 and c == 1
                                                                   and tuple(shape[1:]) == (h, w))
    if not fits:
        want = f"(N, {c}, {h}, {w})" + (f" or (N, {h}, {w})" if c == 1 else "")
        raise DataError(f"{name}: images of shape {tuple(shape)}, but {spec.name} takes {want}")
    if shape[0] == 0:
        raise DataError(f"{name} holds no images")
    check_set_size(shape[0], spec.input_shape)


def _normalize(images: torch.Tensor, spec: ModelSpec, name: str) -> torch.Tensor:
    """Pixels ([0, 1] floats, or 0..255 as uint8) into model-input space with the model's mean/std."""
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif not images.is_floating_point():
        raise DataError(f"{name}: {str(images.dtype).removeprefix('torch.')} images; give floats in [0, 1] or uint8")
    images = images.float()
    if not torch.isfinite(images).all():
        raise DataError(f"{name}: the images hold NaN or infinite values")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise DataError(f"{name}: pixel values span [{low:.3g}, {high:.3g}], not [0, 1]; if the array is already "
                        "in the model's input space, give --normalized")
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (images - mean) / std


def _checked(images: torch.Tensor, spec: ModelSpec, name: str) -> torch.Tensor:
    """What every set must be: float (N, C, H, W) of the model's input shape, finite, not empty."""
    if tuple(images.shape[1:]) != tuple(spec.input_shape) or images.dim() != 4:
        raise DataError(f"{name}: images of shape {tuple(images.shape)}, but {spec.name} takes "
                        f"(N, {', '.join(map(str, spec.input_shape))})")
    if len(images) == 0:
        raise DataError(f"{name} holds no images")
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise DataError(f"{name}: the images must be finite floating-point numbers (NaN or infinite values found)")
    check_set_size(len(images), spec.input_shape)
    return images.float().contiguous()


def content_hash(path: Path) -> str:
    """A short SHA-256 of a file, or of a folder's files (relative names and contents, sorted)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:DIGITS]
