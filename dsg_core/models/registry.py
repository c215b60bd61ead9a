"""One registry for every model the project knows, the way timm does it: a name -> a spec.

A :class:`ModelSpec` says how to build the network and what it expects (input shape,
normalization, classes); :func:`load_model` turns a name into an eval-mode network with its weights,
or raises a :class:`~dsg_core.errors.ModelError` that says how to get them. Nothing here downloads.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..errors import ModelError

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]          # (C, H, W) the network takes
    mean: tuple[float, ...]                    # per-channel normalization of model inputs
    std: tuple[float, ...]
    classes: tuple[str, ...] | Callable[[], tuple[str, ...]]  # names, or a function giving them (lazy)
    dataset: str                               # "mnist" (embedded, offline), "imagenet" or "folder" (a card's)
    load_weights: Callable[["ModelSpec", str | None], dict] = field(repr=False, default=None)
    default: bool = False
    description: str = ""
    real_folder: str | None = None             # a user model's real images (ImageFolder), from its card
    test_folder: str | None = None             # its test images (labelled or plain)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes() if callable(self.classes) else self.classes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def valid_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(low, high) per channel of model inputs made from pixels in [0, 1]: (v - mean) / std."""
        return (tuple(-m / s for m, s in zip(self.mean, self.std)),
                tuple((1 - m) / s for m, s in zip(self.mean, self.std)))

    @property
    def meta(self) -> dict:
        """Facts stored beside an embedded checkpoint (FP32 accuracy, training recipe)."""
        path = CHECKPOINT_DIR / f"{self.name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def fp32_top1(self) -> float | None:
        return self.meta.get("fp32_top1")


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


USER_PREFIX = "user:"


def register_user_model(spec: ModelSpec) -> ModelSpec:
    """Register a user's model (name ``user:<something>``), replacing an earlier one of that name.

    The prefix keeps user models from shadowing the built-in ones that results, caches and docs
    refer to; replacing is allowed because the same file is often loaded again after a fix.
    """
    if not spec.name.startswith(USER_PREFIX) or len(spec.name) == len(USER_PREFIX):
        raise ModelError(f"a user model's name must look like '{USER_PREFIX}<name>', got {spec.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Forget a user model (built-in models cannot be removed); unknown names are ignored."""
    if not name.startswith(USER_PREFIX):
        raise ModelError(f"only user models ('{USER_PREFIX}...') can be unregistered, not {name!r}")
    _REGISTRY.pop(name, None)


def is_user_model(name: str) -> bool:
    return name.startswith(USER_PREFIX) and name in _REGISTRY


def list_models() -> list[ModelSpec]:
    return list(_REGISTRY.values())


def default_model_name() -> str:
    return next(s.name for s in _REGISTRY.values() if s.default)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        if name.startswith(USER_PREFIX):  # loaded in another process (a job's parent, an earlier command)
            from .remembered import recall
            spec = recall(name)
            if spec is not None:
                return spec
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(_REGISTRY)}.") from None


def bn_layer_names(model: nn.Module) -> list[str]:
    """Names of every BatchNorm layer, in forward-registration order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def load_model(name: str, weights: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build ``name`` with its weights, in eval mode.

    ``weights`` is a local file (safetensors or a weights-only .pt/.pth state dict) that replaces the
    default weights, or ``"random"`` to build an untrained network on purpose (timing only).
    """
    spec = get_spec(name)
    model = spec.build()
    if weights != "random":
        state = read_state_dict(weights) if weights else spec.load_weights(spec, None)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"the weights do not fit {name}: {str(exc).splitlines()[0]}") from None
    return model.eval().to(device)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without executing anything the file contains."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle payloads, truncated files, foreign formats
        raise ModelError(f"cannot read weights from {path.name}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'} "
                         "(only safetensors or weights-only torch state dicts are accepted)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} is not a state dict (a mapping of names to tensors)")
    check_values(state, path.name)
    return state


def check_values(state: dict[str, torch.Tensor], what: str) -> None:
    """Weights and statistics are finite floating-point numbers: integer weights would be cast
    silently, and an Inf or NaN (a BN mean, say) poisons every statistic and loss downstream.
    Counters (BN's num_batches_tracked) are the one integer entry a network has."""
    for key, t in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if not t.is_floating_point():
            raise ModelError(f"{what}: {key} holds {str(t.dtype).removeprefix('torch.')} numbers; weights and "
                             "statistics are floating-point (save the state dict of the trained float model)")
        if not bool(torch.isfinite(t).all()):
            raise ModelError(f"{what}: {key} holds NaN or Inf values; the model cannot be used")
