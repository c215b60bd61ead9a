"""A synthetic set: images in model-input space plus everything needed to reproduce and judge them.

Saved as safetensors (tensors) with JSON metadata: loading never unpickles anything, and a file
that is not a DSG synthetic set is refused with a clear message.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DataError
from ..fsutil import atomic_write_bytes

FORMAT = "dsg-synthetic-set/1"
IMPORTED = "imported"  # the label of a set whose config does not say how it was made


@dataclass
class SyntheticSet:
    images: torch.Tensor                      # (N, C, H, W), model-input (normalized) space
    model: str
    config: dict                              # GenerationConfig.to_dict()
    targets: torch.Tensor | None = None       # (N,) target labels when the CE prior was used
    delta: torch.Tensor | None = None         # (num BN layers,) SDA margins used
    gamma: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)  # per iteration: {"loss": .., parts ..}
    seconds: float = 0.0
    # the provenance stamp (``dsg_core/provenance.py``): None for a set made by this process (stamped
    # when saved), {} for a file saved before stamps were recorded (its version is unknown)
    provenance: dict | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def imported(self) -> bool:
        """Made by another tool (``import-set``, or a foreign file whose config says nothing)."""
        return bool(self.config.get("imported")) or not self.config

    @property
    def label(self) -> str:
        """'DSG (SDA+LSE)' for a generated set; an imported set's own label, else 'imported' (an empty
        or foreign config must not pass for the default DSG config)."""
        from ..errors import ConfigError
        from .config import GenerationConfig
        if self.imported:
            return str(self.config.get("label") or IMPORTED)
        try:
            return GenerationConfig.from_dict(self.config).label
        except (ConfigError, TypeError):
            return IMPORTED

    def stamp(self) -> dict:
        """The set's provenance: as recorded, or, for a set made by this process, the code's now."""
        from ..provenance import stamp
        return stamp(self.config) if self.provenance is None else self.provenance

    # ---- persistence -------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"images": self.images.detach().cpu().contiguous()}
        for k in ("targets", "delta", "gamma"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v.detach().cpu().contiguous()
        return out

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "model": self.model, "config": json.dumps(self.config),
                "history": json.dumps(self.history), "seconds": str(self.seconds),
                "provenance": json.dumps(self.stamp())}

    def save(self, path: str | Path) -> Path:
        """Atomic write: a crash mid-save never leaves a half-written file under ``path``."""
        from safetensors.torch import save
        path = Path(path)
        atomic_write_bytes(path, save(self.tensors(), metadata=self.metadata()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SyntheticSet":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"synthetic set not found: {path}")
        return cls.from_bytes(path.read_bytes(), path.name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "file") -> "SyntheticSet":
        from safetensors.torch import load
        try:
            tensors = load(data)
            meta = _safetensors_metadata(data)
        except Exception:
            raise DataError(f"{name} is not a DSG synthetic set (expected a .safetensors file saved by "
                            "dsg_core; it is corrupt or in another format)") from None
        if meta.get("format") != FORMAT or "images" not in tensors:
            raise DataError(f"{name} is a safetensors file but not a DSG synthetic set "
                            f"(format {meta.get('format')!r}, expected {FORMAT!r})")
        images = tensors["images"]
        if images.dim() != 4 or not torch.isfinite(images).all():
            raise DataError(f"{name}: images must be a finite (N, C, H, W) tensor, got shape {tuple(images.shape)}")
        try:
            config = json.loads(meta["config"])
            if not isinstance(config, dict):
                raise ValueError("the config is not a JSON object")
            return cls(images=images, model=meta["model"], config=config,
                       targets=tensors.get("targets"), delta=tensors.get("delta"), gamma=tensors.get("gamma"),
                       history=json.loads(meta.get("history", "[]")), seconds=float(meta.get("seconds", 0)),
                       provenance=json.loads(meta.get("provenance", "{}")))
        except (KeyError, ValueError) as exc:
            raise DataError(f"{name}: damaged metadata ({exc})") from None

    def to_pt_bytes(self) -> bytes:
        """A .pt export loadable with ``torch.load(..., weights_only=True)`` (tensors + JSON text)."""
        buf = io.BytesIO()
        torch.save({**self.tensors(), "meta": json.dumps(self.metadata())}, buf)
        return buf.getvalue()

    # ---- pictures ----------------------------------------------------------------------------
    def to_pixels(self, mean, std) -> torch.Tensor:
        """Images back in [0, 1] pixel space (clamped) for display."""
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        return (self.images.cpu() * s + m).clamp(0, 1)

    def png_grid(self, mean, std, nrow: int = 8) -> bytes:
        from torchvision.utils import make_grid
        return _png(make_grid(self.to_pixels(mean, std), nrow=nrow, padding=2, pad_value=1.0))

    def png_zip(self, mean, std) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for i, img in enumerate(self.to_pixels(mean, std)):
                label = f"_t{int(self.targets[i])}" if self.targets is not None else ""
                zf.writestr(f"sample_{i:04d}{label}.png", _png(img))
        return buf.getvalue()


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob: an 8-byte little-endian length, then JSON."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def _png(img: torch.Tensor) -> bytes:
    from PIL import Image
    arr = (img.clamp(0, 1) * 255).round().byte()
    arr = arr[0] if arr.shape[0] == 1 else arr.permute(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr.numpy()).save(buf, format="PNG")
    return buf.getvalue()
