"""Your own model: weights for a registry architecture, or (on explicit request) a whole-model file.

- A state dict (``.safetensors``, or a weights-only ``.pt``/``.pth``) for a registry architecture is
  read without executing anything (:func:`~dsg_core.models.registry.read_state_dict`) and validated
  against the architecture: input channels, number of classes, finite output.
- A whole-model program, ``torch.export`` (``.pt2``, preferred) or legacy TorchScript (``.pt``), is a
  graph the file defines. It is only loaded when the caller passes ``trust_program=True`` (CLI:
  ``--trust-model-file``), because running it means running what the file says.

:func:`register_loaded` adds the result to the registry under a new name, so every engine
function (generate, diagnose, quantize, compare) works on it by name.
"""

from __future__ import annotations

import copy
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ModelError
from .registry import USER_PREFIX, ModelSpec, bn_layer_names, get_spec, read_state_dict, register_user_model

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


def is_program_file(path: Path) -> bool:
    """TorchScript and torch.export archives are zips with code or a serialized graph inside."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any("/code/" in f"/{n}" or n.endswith("serialized_exported_program.json") or "/models/" in f"/{n}"
               for n in names)


def _first_conv_and_last_linear(model: nn.Module) -> tuple[str | None, str | None]:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (convs[0] if convs else None), (linears[-1] if linears else None)


def check_output(model: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Runs on batches of 2 and 3 (a program exported with a fixed batch size fails the second)."""
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *input_shape)))
            model(torch.zeros((3, *input_shape)))
    except Exception as exc:  # the user's graph: report, do not crash
        raise ModelError(f"the model does not run on batches of {tuple(input_shape)} inputs: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''} (export programs with a dynamic batch "
                         "dimension: dynamic_shapes={'x': {0: torch.export.Dim('batch')}})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"wrong number of classes: the model outputs {shape} for a batch of 2, expected (2, {num_classes})")
    if not torch.isfinite(out).all():
        raise ModelError("the model's output on a blank image is not finite: the weights look corrupt")


def load_weights_for(arch: str, path: str | Path) -> nn.Module:
    """Registry architecture + a state-dict file, validated with messages that say what is wrong."""
    path, spec = Path(path), get_spec(arch)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelError(f"{path.name}: give a .safetensors or a weights-only .pt/.pth state dict")
    if path.exists() and is_program_file(path):
        raise ModelError(f"{path.name} is a whole-model program (TorchScript / torch.export), not a state dict: "
                         "save model.state_dict() instead, or load it as a program with --trust-model-file")
    state = read_state_dict(path)
    model = spec.build()
    conv, linear = _first_conv_and_last_linear(model)
    if conv and f"{conv}.weight" in state and state[f"{conv}.weight"].shape[1] != spec.input_shape[0]:
        raise ModelError(f"wrong input shape: the weights' first conv takes {state[f'{conv}.weight'].shape[1]} "
                         f"channels, but {arch} expects {spec.input_shape[0]}-channel "
                         f"{spec.input_shape[1]}x{spec.input_shape[2]} images")
    if linear and f"{linear}.weight" in state and state[f"{linear}.weight"].shape[0] != spec.num_classes:
        raise ModelError(f"wrong number of classes: the weights' classifier has {state[f'{linear}.weight'].shape[0]} "
                         f"outputs, but {arch} has {spec.num_classes} classes")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"the weights do not fit {arch}: {str(exc).splitlines()[0]}") from None
    model.eval()
    check_output(model, spec.input_shape, spec.num_classes)
    return model


def load_program(path: str | Path, trust_program: bool = False) -> nn.Module:
    """A ``.pt2`` (torch.export) or legacy TorchScript file; only with ``trust_program=True``."""
    path = Path(path)
    if not trust_program:
        raise ModelError(f"{path.name} is a whole-model program: loading it runs the graph it defines. Pass "
                         "--trust-model-file (API: trust_program=True) if you trust its source, or give a state "
                         "dict for a registry architecture instead")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise ModelError(f"cannot load {path.name} as a torch.export (.pt2) or TorchScript program: "
                         f"{type(exc).__name__}") from None


def register_loaded(name: str, model: nn.Module, like: ModelSpec, description: str = "") -> ModelSpec:
    """Put a loaded model in the registry as ``user:<name>``, with the interface (input shape,
    normalization, classes, real data) of the registry model ``like``. Replaces an earlier one."""
    full = name if name.startswith(USER_PREFIX) else f"{USER_PREFIX}{name}"
    frozen = copy.deepcopy(model).eval()
    spec = ModelSpec(name=full, build=lambda: copy.deepcopy(frozen), input_shape=like.input_shape, mean=like.mean,
                     std=like.std, classes=like.classes, dataset=like.dataset,
                     load_weights=lambda _s, _p: frozen.state_dict(),
                     description=description or f"user model with the interface of {like.name}")
    return register_user_model(spec)


def load_user_model(path: str | Path, like: str, trust_program: bool = False) -> ModelSpec:
    """A user file (state dict for ``like``'s architecture, or a program) registered by file name."""
    path = Path(path)
    spec = get_spec(like)
    if path.suffix == ".pt2" or (path.is_file() and is_program_file(path)):
        model = load_program(path, trust_program)
        check_output(model, spec.input_shape, spec.num_classes)
    else:
        model = load_weights_for(like, path)
    return register_loaded(path.stem, model, spec, f"{path.name} ({like} interface)")


def requires_bn(model: nn.Module) -> None:
    if not bn_layer_names(model):
        raise ModelError("the model has no BatchNorm layers: DSG and ZeroQ synthesize data by matching the running "
                         "mean/variance stored in BN layers, so they have nothing to match (quantize it with "
                         "Gaussian noise or real data instead)")
