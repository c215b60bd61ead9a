"""Your own model, three ways in, one validated registry entry.

- A state dict (``.safetensors``, or a weights-only ``.pt``/``.pth``) is read without executing
  anything (:func:`~dsg_core.models.registry.read_state_dict`), for a registry architecture or for
  a network built by the user's Python code (``definition``: ``FILE.py:FUNCTION``).
- A whole-model program, ``torch.export`` (``.pt2``, preferred) or legacy TorchScript (converted to
  torch.export when it can be), is a graph the file defines; it becomes an eager network whose
  batch-norm, conv, linear and ReLU nodes are modules (``exported.py``).
- Python code and programs run what the file says: they are only loaded with ``trust_program=True``
  (CLI: ``--trust-model-file``).

The interface (input shape, normalization, classes, real data) comes from a model card (``card.py``:
``--card``, or ``NAME.json`` beside the file) or, without one, from the registry model ``like``; what
the network itself tells is inferred and everything is checked before anything is registered.
:meth:`UserModel.register` adds it as ``user:<name>``, so every engine function works on it by name.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from .card import ModelCard, card_beside, complete, read_card, spec_for
from .definition import build_from_definition
from .exported import EXPORT_RECIPE, load_exported, modularize
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
        raise ModelError(f"wrong number of classes: the model outputs {shape} for a batch of 2, "
                         f"expected (2, {num_classes})")
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


def _trusted(path: Path, trust_program: bool) -> None:
    if not trust_program:
        raise ModelError(f"{path.name} is a whole-model program: loading it runs the graph it defines. Pass "
                         "--trust-model-file (API: trust_program=True) if you trust its source, or give a state "
                         "dict for a registry architecture instead")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")


def load_torchscript(path: Path, input_shape: tuple[int, ...]) -> nn.Module:
    """A TorchScript file converted to torch.export and modularized: a ScriptModule itself cannot be
    hooked (``register_forward_hook is not supported on ScriptModules``), so BN statistics need this."""
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice: this is the way off it
            warnings.simplefilter("ignore", FutureWarning)
            script = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelError(f"cannot load {path.name} as a TorchScript program: {type(exc).__name__}") from None
    try:
        from torch._export.converter import TS2EPConverter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = TS2EPConverter(script, (torch.zeros((2, *input_shape)),)).convert()
        return modularize(ep.module())
    except Exception as exc:  # the converter covers much of TorchScript, not all
        raise ModelError(f"{path.name} is TorchScript, which cannot be hooked for BN statistics, and converting "
                         f"it to torch.export failed ({type(exc).__name__}); from the Python model, "
                         f"{EXPORT_RECIPE}") from None


def load_program(path: str | Path, trust_program: bool = False,
                 input_shape: tuple[int, ...] | None = None) -> tuple[nn.Module, tuple[int, ...] | None]:
    """A ``.pt2`` (torch.export) or TorchScript file, only with ``trust_program=True``: the network
    and the (C, H, W) the program declares (-1: dynamic; None for TorchScript)."""
    path = Path(path)
    _trusted(path, trust_program)
    if path.suffix == ".pt2" or not _is_torchscript(path):
        return load_exported(path)
    if input_shape is None:
        raise ConfigError(f"{path.name} is TorchScript: its model card needs input_shape to convert it")
    return load_torchscript(path, input_shape), None


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in f"/{n}" for n in zf.namelist())


def load_state_into(model: nn.Module, path: str | Path, what: str) -> None:
    """A state dict file into a network built from Python code, with a one-line reason on a mismatch."""
    path = Path(path)
    if path.exists() and is_program_file(path):
        raise ModelError(f"{path.name} is a whole-model program, not a state dict: give model.state_dict()")
    try:
        model.load_state_dict(read_state_dict(path))
    except RuntimeError as exc:
        raise ModelError(f"the weights in {path.name} do not fit {what}: {str(exc).splitlines()[0]}") from None


@dataclass(frozen=True)
class UserModel:
    """A validated user model, not registered yet: the network, its completed card, and notes
    saying where the interface came from, what was inferred and what was checked."""
    name: str
    model: nn.Module
    card: ModelCard
    notes: tuple[str, ...]
    description: str
    source: dict  # how it was loaded (path, definition, like, trust): what remembered.py records

    def register(self, remember: bool = False) -> ModelSpec:
        """Register in this process; ``remember=True`` also records it for other processes
        (background jobs, torchrun ranks, History, later commands: ``remembered.py``)."""
        spec = register_user_model(spec_for(self.name, self.model, self.card, self.description))
        if remember:
            from .remembered import remember as write_record
            write_record(self)
        return spec


def interface(path: Path | None, like: str | None, card: ModelCard | str | Path | None) -> tuple[ModelCard, str]:
    """The card to use and where it came from: the given one, ``NAME.json`` beside the file, or ``like``'s."""
    if isinstance(card, ModelCard):
        return card, "interface: the given model card"
    if card is not None:
        return read_card(card), f"interface: model card {Path(card).name}"
    beside = card_beside(path) if path is not None else None
    if beside is not None:
        return read_card(beside), f"interface: model card {beside.name} (beside the model file)"
    if like:
        return ModelCard.from_spec(get_spec(like)), f"interface: borrowed from {like} (no model card)"
    raise ConfigError("a user model needs a model card (input_shape, mean, std; --card or NAME.json beside it)")


def load_user(path: str | Path | None = None, *, like: str | None = None, card: ModelCard | str | Path | None = None,
              definition: str | None = None, trust_program: bool = False, name: str | None = None) -> UserModel:
    """Load and validate a user model without registering anything: a state dict for the registry
    architecture ``like``, a state dict for the network ``definition`` builds, or a program."""
    path = Path(path) if path is not None else None
    if path is None and definition is None:
        raise ConfigError("give a model file (--model-file) or a Python definition (--model-def)")
    wanted, source = interface(path, like, card)
    program_shape, hint = None, ""
    if definition is not None:
        model = build_from_definition(definition, trust_program)
        if path is not None:
            load_state_into(model, path, definition)
        kind = f"{definition}" + (f" + {path.name}" if path is not None else "")
    elif path.suffix == ".pt2" or (path.is_file() and is_program_file(path)):
        model, program_shape = load_program(path, trust_program, wanted.input_shape)
        kind, hint = f"{path.name} (program)", f" ({EXPORT_RECIPE})"
    else:
        if not like:
            raise ConfigError(f"{path.name} is a state dict: name its architecture (--model) or its Python "
                              "definition (--model-def)")
        model, kind = load_weights_for(like, path), f"{path.name} ({like} weights)"
    requires_bn(model)
    completed, notes = complete(wanted, model, program_shape, hint)
    notes = [source, *notes, f"{len(bn_layer_names(model))} BatchNorm layers"]
    stem = name or (path.stem if path is not None else definition.rpartition(":")[2])
    full = stem if stem.startswith(USER_PREFIX) else f"{USER_PREFIX}{stem}"
    source = {"path": str(path.resolve()) if path is not None else None, "definition": _absolute(definition),
              "like": like, "trust": trust_program}
    return UserModel(full, model, completed, tuple(notes), kind, source)


def _absolute(definition: str | None) -> str | None:
    """A FILE.py definition with an absolute path, so another process in another folder finds it."""
    if definition is None or not definition.rpartition(":")[0].endswith(".py"):
        return definition
    where, _, func = definition.rpartition(":")
    return f"{Path(where).resolve()}:{func}"


def load_user_model(path: str | Path | None, like: str | None = None, trust_program: bool = False, *,
                    card: ModelCard | str | Path | None = None, definition: str | None = None) -> ModelSpec:
    """:func:`load_user` then register: the model is usable by name (``user:<file stem>``)."""
    return load_user(path, like=like, card=card, definition=definition, trust_program=trust_program).register()


def requires_bn(model: nn.Module) -> None:
    if not bn_layer_names(model):
        raise ModelError("the model has no BatchNorm layers: DSG and ZeroQ synthesize data by matching the running "
                         "mean/variance stored in BN layers, so they have nothing to match (quantize it with "
                         "Gaussian noise or real data instead)")
