"""Bring your own model: checks on an uploaded state dict or torch.export program, and where uploads are kept.

Nothing uploaded is ever unpickled: weights go through ``dsg_core.models.user.load_weights_for``
(safetensors, or ``torch.load(weights_only=True)``, validated against the architecture), programs
through ``dsg_core.models.user.load_user`` (only after the user ticks that they trust the file), and
zips through ``dsg_core.data.archive.safe_extract`` (members vetted before extraction). Uploads live in
``<runs folder>/uploads/`` (private to the server's user, not the shared /tmp), named by the hash of
their content so a rerun finds them instead of writing them again; the oldest are pruned.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from dsg_core.data.archive import safe_extract
from dsg_core.errors import ConfigError
from dsg_core.models import bn_layer_names, get_spec
from dsg_core.models.card import ModelCard
from dsg_core.models.user import WEIGHT_SUFFIXES, UserModel, load_user, load_weights_for, requires_bn

from .state import runs_dir

WEIGHT_TYPES = tuple(s.lstrip(".") for s in WEIGHT_SUFFIXES)
KEEP_UPLOADS = 16           # uploads kept beyond a day's age (each is one weights file or one image folder)
KEEP_SECONDS = 24 * 3600


def uploads_dir() -> Path:
    """``<runs>/uploads``, created private; a link in its place is replaced, never followed."""
    root = runs_dir() / "uploads"
    if root.is_symlink():
        root.unlink()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def save_upload(data: bytes, name: str) -> Path:
    """Write an upload to a content-addressed file (same bytes, same path: caches stay valid),
    atomically, replacing (not following) anything already at that name."""
    root = uploads_dir()
    folder = root / digest(data)
    path = folder / file_name(name)
    if path.is_file() and not path.is_symlink() and not folder.is_symlink():
        os.utime(folder)
        return path
    prune(root)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def extract_images(data: bytes) -> Path:
    """An uploaded zip of images, extracted once per content (``safe_extract`` vets and cleans up)."""
    root = uploads_dir()
    dest = root / f"images_{digest(data)}"
    if dest.is_symlink():
        dest.unlink()
    if not dest.exists():
        prune(root)
    else:
        os.utime(dest)
    return safe_extract(data, dest)


def file_name(name: str) -> str:
    """The upload's base name with anything but letters, digits and ``._-`` replaced (keeps the suffix)."""
    base = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name).lstrip(".")
    return base or "upload"


def prune(root: Path, keep: int = KEEP_UPLOADS, max_age_s: float = KEEP_SECONDS) -> list[str]:
    """Remove uploads older than a day beyond the ``keep`` most recent, and leftover partial
    extractions (a killed server's) older than an hour; returns the names removed."""
    now = time.time()
    entries = sorted(root.iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
    gone = [p for i, p in enumerate(entries)
            if (p.name.startswith(".partial-") and now - p.lstat().st_mtime > 3600)
            or (not p.name.startswith(".") and i >= keep and now - p.lstat().st_mtime > max_age_s)]
    for p in gone:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return [p.name for p in gone]


def check_weights(arch: str, path: Path) -> list[str]:
    """Validate uploaded weights for a registry architecture; raises ModelError with what is wrong."""
    spec = get_spec(arch)
    model = load_weights_for(arch, path)
    requires_bn(model)
    n_bn = len(bn_layer_names(model))
    return [f"{len(model.state_dict())} tensors loaded into {arch}", f"{n_bn} BatchNorm layers",
            f"input {spec.input_shape}, {spec.num_classes} classes"]


def numbers(text: str, what: str) -> list[float] | None:
    """A comma-separated form field as numbers (None when empty); ConfigError names the field."""
    if not text.strip():
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what}: give comma-separated numbers, e.g. 0.5, 0.5, 0.5; got {text!r}") from None


def card_from_form(*, shape: str, mean: str, std: str, num_classes: int, class_names: str, mnist: bool,
                   image_dir: str | None) -> ModelCard:
    """The card form's fields as a validated card; empty fields are left for the model to tell."""
    dims = numbers(shape, "input shape")
    if dims is not None and not all(d == int(d) for d in dims):
        raise ConfigError(f"input shape: give whole numbers C, H, W; got {shape!r}")
    data = {"input_shape": [int(d) for d in dims] if dims is not None else None, "mean": numbers(mean, "mean"),
            "std": numbers(std, "std"), "num_classes": num_classes or None,
            "class_names": [c.strip() for c in class_names.split(",")] if class_names.strip() else None,
            "dataset": "mnist" if mnist else None, "real_folder": image_dir, "test_folder": image_dir}
    return ModelCard.from_dict({k: v for k, v in data.items() if v is not None}, source="the model card form")


def check_program(path: Path, card: ModelCard) -> UserModel:
    """Load and validate an uploaded .pt2 (the caller has the user's trust); registers nothing. The
    name carries the file's digest folder, so a changed upload is never served from a stale cache."""
    return load_user(path, card=card, trust_program=True, name=f"{path.stem}-{path.parent.name[:6]}")
