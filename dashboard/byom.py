"""Bring your own model: checks on an uploaded state dict or torch.export program, and where uploads are kept.

Nothing uploaded is ever unpickled: weights go through ``dsg_core.models.user.load_weights_for``
(safetensors, or ``torch.load(weights_only=True)``, validated against the architecture), programs
through ``dsg_core.models.user.load_user`` (only after the user ticks that they trust the file), and
zips through ``dsg_core.data.archive.safe_extract`` (members vetted before extraction).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from dsg_core.errors import ConfigError
from dsg_core.models import bn_layer_names, get_spec
from dsg_core.models.card import ModelCard
from dsg_core.models.user import WEIGHT_SUFFIXES, UserModel, load_user, load_weights_for, requires_bn

WEIGHT_TYPES = tuple(s.lstrip(".") for s in WEIGHT_SUFFIXES)
UPLOAD_ROOT = Path(tempfile.gettempdir()) / "dsg_lab_uploads"


def save_upload(data: bytes, name: str) -> Path:
    """Write an upload to a content-addressed temp file (same bytes, same path: caches stay valid)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = UPLOAD_ROOT / digest / Path(name).name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


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
