"""The held-out models of issue 18: a recipe chosen on the two embedded models is measured on networks
the project has not tuned anything on.

    python bench/unseen_model.py                          # train vgg_bn_mnist (under 2 minutes on one thread)
    python bench/unseen_model.py --model allconv_bn_mnist # train the second one (and lenet_bn_mnist the third)

``vgg_bn_mnist`` is a plain VGG-style CNN (no residuals, no depthwise convolutions: unlike ResNet-20 and
MobileNetV2), BatchNorm after every convolution, trained exactly like the embedded models
(``scripts/train_embedded.py``'s ``fit``). It is not shipped: the checkpoint lives under the git-ignored
bench/cache/unseen/ with a JSON file of facts beside it. :func:`register` adds it to the model registry;
loading its weights before it was trained raises a ModelError that names the command above (nothing
trains behind the back of a benchmark run).

``allconv_bn_mnist`` is a second held-out network, added when ``vgg_bn_mnist`` had been used to test why
`best` falls short (``bench/recipes.py``) and so no longer counted as unseen for a recipe chosen after
that: all-convolutional (a 5x5 stem, stride-2 3x3 convolutions instead of pooling, a 1x1 convolution as
the classifier over global average pooling), BN after every convolution but the last. ``lenet_bn_mnist``,
the third, was added to confirm what the first two showed (``bench/recipes.py``): LeNet-style, two 5x5
convolutions with BN and max-pooling, then two linear layers on the flattened map (no global pooling).
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
SECOND = "allconv_bn_mnist"
THIRD = "lenet_bn_mnist"
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


class AllConvBN(nn.Module):
    """conv5x5-BN-ReLU, then conv3x3-BN-ReLU pairs whose second conv has stride 2 (28 -> 14 -> 7), a 1x1
    convolution to the classes and global average pooling: no pooling layers, no linear layer."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (24, 24, 48, 48, 96)):
        super().__init__()
        layers, c = [], in_chans
        for i, w in enumerate(widths):
            k, stride = (5, 1) if i == 0 else (3, 2 if i % 2 == 0 else 1)
            layers += [nn.Conv2d(c, w, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x)).mean(dim=(2, 3))


class LeNetBN(nn.Module):
    """(conv5x5-BN-ReLU, max-pool) x 2, flatten, linear-ReLU, linear: LeNet-5's layout with BN."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (20, 50), hidden: int = 128):
        super().__init__()
        layers, c = [], in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 5, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 7 * 7, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


ARCHITECTURES = {  # name -> (network, registry description)
    NAME: (VGGBN, "Held-out VGG-style CNN (6 conv+BN+ReLU, no residuals) trained on MNIST-5k; not shipped."),
    SECOND: (AllConvBN, "Second held-out CNN (all-convolutional: strided convs, 1x1 conv classifier, no "
                        "pooling or linear layer) trained on MNIST-5k; not shipped."),
    THIRD: (LeNetBN, "Third held-out CNN (LeNet-style: two conv+BN+pool, two linear layers on the flattened "
                     "map) trained on MNIST-5k; not shipped."),
}


def checkpoint(name: str) -> Path:
    """Where a held-out model's weights live (``CHECKPOINT`` for vgg_bn_mnist, beside it for the rest)."""
    return CHECKPOINT if name == NAME else CHECKPOINT.with_name(f"{name}.safetensors")


def _weights(spec: ModelSpec, _unused) -> dict:
    from safetensors.torch import load_file
    path = checkpoint(spec.name)
    if not path.exists():
        flag = "" if spec.name == NAME else f" --model {spec.name}"
        raise ModelError(f"checkpoint {path} is missing: run `python bench/unseen_model.py{flag}` "
                         "(under 2 minutes on one thread)")
    return load_file(str(path))


def register() -> ModelSpec:
    """Add the held-out models to the registry (a second call adds nothing); returns vgg_bn_mnist's spec."""
    known = {s.name: s for s in list_models()}
    for name, (build, description) in ARCHITECTURES.items():
        if name not in known:
            known[name] = register_model(ModelSpec(
                name=name, build=build, input_shape=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, classes=DIGITS,
                dataset="mnist", load_weights=_weights, description=description))
    return known[NAME]


def facts(name: str = NAME) -> dict:
    """The JSON facts beside the checkpoint (FP32 test top-1, recipe), or {} before training."""
    path = checkpoint(name).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def train(name: str = NAME, *, epochs: int = RECIPE["epochs"], lr: float = RECIPE["lr"], batch: int = RECIPE["batch"],
          seed: int = RECIPE["seed"]) -> dict:
    """Train one held-out model with the embedded models' loop and write its checkpoint and facts."""
    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from train_embedded import fit, save_checkpoint
    torch.manual_seed(seed)
    model = ARCHITECTURES[name][0]()
    meta = fit(model, name=name, mean=MNIST_MEAN, std=MNIST_STD, epochs=epochs, lr=lr, batch=batch, seed=seed)
    if name == NAME:
        meta["widths"] = list(WIDTHS)
    save_checkpoint(model, meta, checkpoint(name).parent, name)
    return meta


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="train a held-out model of issue 18")
    ap.add_argument("--model", default=NAME, choices=list(ARCHITECTURES))
    chosen = ap.parse_args().model
    print(json.dumps({chosen: train(chosen)}))
