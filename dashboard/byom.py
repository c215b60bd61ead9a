"""Bring your own model: checks on an uploaded state dict and a safe unzip of labelled test images.

Nothing uploaded is ever unpickled: weights go through ``dsg_core.models.read_state_dict``
(safetensors, or ``torch.load(weights_only=True)``), and zip members are vetted before extraction
(no absolute paths, no ``..``, no links, bounded count and size).
"""

from __future__ import annotations

import hashlib
import stat
import tempfile
import zipfile
from io import BytesIO
from pathlib import Path, PurePosixPath

import torch
import torch.nn as nn

from dsg_core.errors import DataError, ModelError
from dsg_core.models import bn_layer_names, get_spec, load_model, read_state_dict

WEIGHT_TYPES = ("safetensors", "pt", "pth")
MAX_UPLOAD_FILES = 20_000
MAX_UNZIPPED_BYTES = 512 * 2**20
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "dsg_lab_uploads"


def save_upload(data: bytes, name: str) -> Path:
    """Write an upload to a content-addressed temp file (same bytes, same path: caches stay valid)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = UPLOAD_ROOT / digest / Path(name).name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a code/ folder (a weights-only .pt has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in f"/{n}" for n in zf.namelist())


def _first_and_last(model: nn.Module) -> tuple[str | None, str | None]:
    """Names of the first conv and the last linear layer (where input shape and classes show)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (convs[0] if convs else None), (linears[-1] if linears else None)


def check_weights(arch: str, path: Path) -> list[str]:
    """Validate uploaded weights for a registry architecture; raises ModelError with what is wrong."""
    spec = get_spec(arch)
    if path.suffix.lstrip(".") not in WEIGHT_TYPES:
        raise ModelError(f"{path.name}: upload a .safetensors or a weights-only .pt/.pth state dict")
    if is_torchscript(path):
        raise ModelError(f"{path.name} is a TorchScript program, not a state dict: TorchScript uploads are not "
                         "supported here; save model.state_dict() with safetensors or torch.save instead")
    state = read_state_dict(path)
    model = spec.build()
    if not bn_layer_names(model):
        raise ModelError(f"{arch} has no BatchNorm layers: DSG and ZeroQ synthesize data by matching the running "
                         "mean/variance stored in BN layers, so they have nothing to match")
    conv, linear = _first_and_last(model)
    c = spec.input_shape[0]
    if conv and f"{conv}.weight" in state and state[f"{conv}.weight"].shape[1] != c:
        raise ModelError(f"wrong input shape: the weights' first conv takes {state[f'{conv}.weight'].shape[1]} "
                         f"channels, but {arch} expects {c}-channel {spec.input_shape[1]}×{spec.input_shape[2]} images")
    if linear and f"{linear}.weight" in state and state[f"{linear}.weight"].shape[0] != spec.num_classes:
        raise ModelError(f"wrong number of classes: the weights' classifier has {state[f'{linear}.weight'].shape[0]} "
                         f"outputs, but {arch} has {spec.num_classes} classes")
    model = load_model(arch, weights=str(path))
    with torch.no_grad():
        out = model(torch.zeros((2, *spec.input_shape)))
    if not torch.isfinite(out).all():
        raise ModelError("the model's output on a blank image is not finite: the weights look corrupt")
    return [f"{len(state)} tensors loaded into {arch}", f"{len(bn_layer_names(model))} BatchNorm layers",
            f"input {spec.input_shape}, {spec.num_classes} classes"]


def safe_extract(data: bytes, dest: Path, max_files: int = MAX_UPLOAD_FILES,
                 max_bytes: int = MAX_UNZIPPED_BYTES) -> Path:
    """Extract a zip after vetting every member; returns the ImageFolder root inside it."""
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except zipfile.BadZipFile:
        raise DataError("the test-image upload is not a zip file") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > max_files:
            raise DataError(f"the zip holds {len(members)} files; the limit is {max_files}")
        if sum(m.file_size for m in members) > max_bytes:
            raise DataError(f"the zip unpacks to more than {max_bytes // 2**20} MiB")
        for m in members:
            _check_member(m)
        dest.mkdir(parents=True, exist_ok=True)
        for m in members:
            target = dest / PurePosixPath(m.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src:
                payload = src.read(max_bytes + 1)
            if len(payload) != m.file_size:  # a lying header: refuse rather than trust it
                raise DataError(f"{m.filename}: size does not match the zip's directory")
            target.write_bytes(payload)
    return image_root(dest)


def _check_member(m: zipfile.ZipInfo) -> None:
    p = PurePosixPath(m.filename.replace("\\", "/"))
    if p.is_absolute() or m.filename.startswith(("/", "\\")) or (len(p.parts) and ":" in p.parts[0]):
        raise DataError(f"refusing {m.filename!r}: absolute paths are not allowed in the zip")
    if ".." in p.parts:
        raise DataError(f"refusing {m.filename!r}: '..' in a path could write outside the upload folder")
    if stat.S_ISLNK(m.external_attr >> 16):
        raise DataError(f"refusing {m.filename!r}: links are not allowed in the zip")


def image_root(root: Path) -> Path:
    """Descend through single wrapper folders (e.g. test/) to the folder whose subfolders are classes."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(("__MACOSX", "."))]
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) == 1 and len(entries) == 1 and any(e.is_dir() for e in dirs[0].iterdir()):
            root = dirs[0]
        else:
            return root
