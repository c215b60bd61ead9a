"""A model card: what a network expects and where its real data is, for a model the registry lacks.

``NAME.json`` beside the model file (same stem), or a file given with ``--card``::

    {"input_shape": [1, 28, 28], "mean": [0.1307], "std": [0.3081], "num_classes": 10,
     "class_names": ["zero", ...], "real_folder": "digits/train", "test_folder": "digits/test"}

``mean``/``std`` are per channel, for pixels in [0, 1]. ``"dataset": "mnist"`` makes the embedded MNIST
digits the model's real data (1x28x28 models only); ``"imagenet"`` gives its folders ImageNet's
resize and center crop. :func:`complete` fills in what the network itself
says (input channels from its first conv, classes from its output; the input shape of an exported
program) and refuses a card that contradicts the network, one line per problem.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ConfigError, ModelError
from .registry import ModelSpec

FIELDS = ("input_shape", "mean", "std", "num_classes", "class_names", "real_folder", "test_folder", "dataset")
DATASETS = ("mnist", "imagenet")


@dataclass(frozen=True)
class ModelCard:
    input_shape: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    real_folder: str | None = None
    test_folder: str | None = None
    dataset: str | None = None

    @classmethod
    def from_dict(cls, data, base: Path | None = None, source: str = "the model card") -> "ModelCard":
        """Type-checked fields; relative folders are taken relative to ``base`` (the card's folder)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must be a JSON object with the fields {', '.join(FIELDS)}")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
        shape = data.get("input_shape")
        if shape is not None and not (_ints(shape) and len(shape) == 3 and min(shape) > 0):
            raise ConfigError(f"{source}: input_shape must be [C, H, W] (positive integers), got {shape!r}")
        for key in ("mean", "std"):
            if data.get(key) is not None and not (_numbers(data[key]) and data[key]):
                raise ConfigError(f"{source}: {key} must be a list of numbers, one per channel, got {data[key]!r}")
        if data.get("std") is not None and min(data["std"]) <= 0:
            raise ConfigError(f"{source}: std must be positive, got {data['std']!r}")
        n = data.get("num_classes")
        if n is not None and not (_ints([n]) and n >= 2):
            raise ConfigError(f"{source}: num_classes must be an integer >= 2, got {n!r}")
        names = data.get("class_names")
        if names is not None and not (isinstance(names, list) and names and all(isinstance(c, str) for c in names)):
            raise ConfigError(f"{source}: class_names must be a list of strings, got {names!r}")
        for key in ("real_folder", "test_folder", "dataset"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ConfigError(f"{source}: {key} must be a string, got {data[key]!r}")
        if data.get("dataset") not in (None, *DATASETS):
            raise ConfigError(f"{source}: dataset must be one of {', '.join(DATASETS)} (or left out), "
                              f"got {data['dataset']!r}")
        folders = {k: str((base / data[k]) if base and not Path(data[k]).is_absolute() else Path(data[k]))
                   for k in ("real_folder", "test_folder") if data.get(k)}
        return cls(input_shape=tuple(shape) if shape else None,
                   mean=_floats(data.get("mean")), std=_floats(data.get("std")), num_classes=n,
                   class_names=tuple(names) if names else None, dataset=data.get("dataset"), **folders)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> "ModelCard":
        """A registry model's interface, for a user model that borrows it (its data set included: an
        ImageNet architecture keeps ImageNet's resize and crop for image folders)."""
        return cls(input_shape=spec.input_shape, mean=spec.mean, std=spec.std, num_classes=spec.num_classes,
                   class_names=spec.class_names, dataset=spec.dataset, real_folder=spec.real_folder,
                   test_folder=spec.test_folder)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}


def _ints(v) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)


def _numbers(v) -> bool:
    return isinstance(v, (list, tuple)) and all(
        isinstance(i, (int, float)) and not isinstance(i, bool) and math.isfinite(i) for i in v)


def _floats(v) -> tuple[float, ...] | None:
    return tuple(float(i) for i in v) if v is not None else None


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model card not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"model card {path.name} is not valid JSON: {exc}") from None
    return ModelCard.from_dict(data, base=path.parent, source=f"model card {path.name}")


def card_beside(model_path: str | Path) -> Path | None:
    """``NAME.json`` next to ``NAME.<ext>`` when it looks like a card (has a card field): a JSON of
    other facts (an embedded checkpoint's training record) is not mistaken for one."""
    path = Path(model_path).with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return path  # meant as a card but broken: read_card will say why
    return path if isinstance(data, dict) and set(data) & set(FIELDS) else None


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def complete(card: ModelCard, model: nn.Module, program_shape: tuple[int, ...] | None = None, hint: str = ""
             ) -> tuple[ModelCard, list[str]]:
    """The card with every field the network can tell filled in, and notes saying what was inferred
    and checked. ModelError when the card contradicts the network, ConfigError when it lacks what
    cannot be inferred; ``hint`` ends the message of a network that does not run."""
    notes: list[str] = []
    shape = _input_shape(card, model, program_shape, notes)
    for key in ("mean", "std"):
        values = getattr(card, key)
        if values is None:
            raise ConfigError(f"the model card needs {key} (per channel, for pixels in [0, 1]), e.g. "
                              f"\"{key}\": {[0.5] * shape[0]}")
        if len(values) != shape[0]:
            raise ConfigError(f"the model card's {key} has {len(values)} values for {shape[0]} input channels")
    classes = _num_classes(card, model, shape, notes, hint)
    names = card.class_names or tuple(str(i) for i in range(classes))
    if len(names) != classes:
        raise ModelError(f"the model card lists {len(names)} class names for a model with {classes} outputs")
    for key in ("real_folder", "test_folder"):
        folder = getattr(card, key)
        if folder and not Path(folder).is_dir():
            raise ConfigError(f"the model card's {key} is not a folder: {folder}")
    if card.dataset == "mnist" and shape != (1, 28, 28):
        raise ConfigError(f"dataset mnist (the embedded digits) needs input_shape [1, 28, 28], not {list(shape)}")
    notes.append(f"checked: input {tuple(shape)}, {classes} classes, mean/std for {shape[0]} channel(s)")
    return replace(card, input_shape=tuple(shape), num_classes=classes, class_names=names), notes


def _input_shape(card: ModelCard, model: nn.Module, program_shape, notes: list[str]) -> tuple[int, int, int]:
    conv = first_conv(model)
    shape = card.input_shape
    if program_shape is not None:
        if shape is None and -1 not in program_shape:
            shape = tuple(program_shape)
            notes.append(f"inferred input shape {shape} from the exported program")
        elif shape is not None and any(p not in (-1, s) for p, s in zip(program_shape, shape)):
            raise ModelError(f"the model card says input_shape {list(shape)} but the program was exported for "
                             f"{list(program_shape)} (-1: dynamic)")
    if shape is None:
        channels = f"{conv.in_channels}-channel " if conv is not None else ""
        raise ConfigError(f"the model card needs input_shape [C, H, W]: the {channels}image size cannot be "
                          "inferred from the network")
    if conv is not None:
        if conv.in_channels != shape[0]:
            raise ModelError(f"the model card says {shape[0]} input channels but the first conv takes "
                             f"{conv.in_channels}")
        if card.input_shape is not None:
            notes.append(f"checked: the first conv takes {conv.in_channels} channel(s)")
    return shape


def _num_classes(card: ModelCard, model: nn.Module, shape: tuple[int, int, int], notes: list[str], hint: str) -> int:
    """Run the network on batches of 2 and 3 (a fixed batch size fails the second); its output must be
    (batch, classes) and finite."""
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *shape)))
            model(torch.zeros((3, *shape)))
    except Exception as exc:  # the user's network: report, do not crash
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"the model does not run on batches of {tuple(shape)} inputs: {type(exc).__name__}: "
                         f"{first[:200]}{hint}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"the model outputs {got} for a batch of 2; a classifier outputs (batch, classes) logits")
    if not torch.isfinite(out).all():
        raise ModelError("the model's output on a blank image is not finite: the weights look corrupt")
    if card.num_classes is None:
        notes.append(f"inferred {out.shape[1]} classes from the output")
    elif card.num_classes != out.shape[1]:
        raise ModelError(f"wrong number of classes: the model card says {card.num_classes} but the model "
                         f"outputs {out.shape[1]}")
    return int(out.shape[1])


def spec_for(name: str, model: nn.Module, card: ModelCard, description: str) -> ModelSpec:
    """A registry entry for a loaded model and its completed card (``complete``)."""
    frozen = copy.deepcopy(model).eval()
    return ModelSpec(name=name, build=lambda: copy.deepcopy(frozen), input_shape=card.input_shape,
                     mean=card.mean, std=card.std, classes=card.class_names, dataset=card.dataset or "folder",
                     load_weights=lambda _s, _p: frozen.state_dict(), description=description,
                     real_folder=card.real_folder, test_folder=card.test_folder)
