"""Bring your own model: checks on an uploaded state dict, and where uploads are kept.

Nothing uploaded is ever unpickled: weights go through ``dsg_core.models.user.load_weights_for``
(safetensors, or ``torch.load(weights_only=True)``, validated against the architecture), and zips
through ``dsg_core.data.archive.safe_extract`` (members vetted before extraction).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from dsg_core.models import bn_layer_names, get_spec
from dsg_core.models.user import WEIGHT_SUFFIXES, load_weights_for, requires_bn

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
