"""The held-out model of issue 18: a recipe chosen on the two embedded models is measured on a third
network the project has not tuned anything on.

    python bench/unseen_model.py            # train it (under 2 minutes on one thread) and write the checkpoint

``vgg_bn_mnist`` is a plain VGG-style CNN (no residuals, no depthwise convolutions: unlike ResNet-20 and
MobileNetV2), BatchNorm after every convolution, trained exactly like the embedded models
(``scripts/train_embedded.py``'s ``fit``). It is not shipped: the checkpoint lives under the git-ignored
bench/cache/unseen/ with a JSON file of facts beside it. :func:`register` adds it to the model registry;
loading its weights before it was trained raises a ModelError that names the command above (nothing
trains behind the back of a benchmark run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.nn as nn

from dsg_core.errors import ModelError
from dsg_core.models import list_models
from dsg_core.models.embedded import DIGITS, MNIST_MEAN, MNIST_STD
from dsg_core.models.registry import ModelSpec, register_model

NAME = "vgg_bn_mnist"
CHECKPOINT = Path(__file__).resolve().parent / "cache" / "unseen" / f"{NAME}.safetensors"
WIDTHS = (16, 16, 32, 32, 64, 64)  # two convs per stage, 2x2 max-pool between stages: 28 -> 14 -> 7
RECIPE = dict(epochs=15, lr=0.1, batch=64, seed=0)


class VGGBN(nn.Module):
    """conv3x3-BN-ReLU x 6 (max-pool after every second one), global average pool, linear head."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        layers, c = [], in_chans
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i % 2 == 1 and i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _weights(spec: ModelSpec, _unused) -> dict:
    from safetensors.torch import load_file
    if not CHECKPOINT.exists():
        raise ModelError(f"checkpoint {CHECKPOINT} is missing: run `python bench/unseen_model.py` "
                         "(under 2 minutes on one thread)")
    return load_file(str(CHECKPOINT))


def register() -> ModelSpec:
    """Add ``vgg_bn_mnist`` to the registry; a second call returns the spec already there."""
    known = {s.name: s for s in list_models()}
    if NAME in known:
        return known[NAME]
    return register_model(ModelSpec(
        name=NAME, build=VGGBN, input_shape=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, classes=DIGITS,
        dataset="mnist", load_weights=_weights,
        description="Held-out VGG-style CNN (6 conv+BN+ReLU, no residuals) trained on MNIST-5k; not shipped."))


def facts() -> dict:
    """The JSON facts beside the checkpoint (FP32 test top-1, recipe), or {} before training."""
    path = CHECKPOINT.with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def train(*, epochs: int = RECIPE["epochs"], lr: float = RECIPE["lr"], batch: int = RECIPE["batch"],
          seed: int = RECIPE["seed"]) -> dict:
    """Train the model with the embedded models' loop and write its checkpoint and facts."""
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from train_embedded import fit, save_checkpoint
    torch.manual_seed(seed)
    model = VGGBN()
    meta = fit(model, name=NAME, mean=MNIST_MEAN, std=MNIST_STD, epochs=epochs, lr=lr, batch=batch, seed=seed)
    meta["widths"] = list(WIDTHS)
    save_checkpoint(model, meta, CHECKPOINT.parent, NAME)
    return meta


if __name__ == "__main__":
    print(json.dumps({NAME: train()}))
