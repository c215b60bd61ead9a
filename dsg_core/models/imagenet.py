"""torchvision ImageNet models, with weights only from the local torch cache or a file you name.

Nothing is downloaded: if the pretrained file is not in ``$TORCH_HOME/hub/checkpoints`` the loader
raises a ModelError that names the file to place there (or pass ``--weights FILE``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.models as tvm

from ..errors import ModelError
from .registry import ModelSpec, read_state_dict, register_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# name -> (builder, weights enum, input size)
_TV = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, 224),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, 224),
    "mobilenet_v2": (tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V1, 224),
    "shufflenet_v2_x1_0": (tvm.shufflenet_v2_x1_0, tvm.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1, 224),
    "inception_v3": (tvm.inception_v3, tvm.Inception_V3_Weights.IMAGENET1K_V1, 299),
}


def cached_weights_path(name: str) -> Path:
    """Where torch's hub cache keeps the pretrained file for ``name``."""
    url = _TV[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _cache_weights(spec: ModelSpec, _unused) -> dict:
    path = cached_weights_path(spec.name)
    if not path.exists():
        raise ModelError(
            f"pretrained weights for {spec.name} are not available offline: expected {path}. "
            f"Copy the file there (torchvision's {_TV[spec.name][1]} weights) or pass a local "
            "weights file (--weights FILE). A randomly initialised model is never used for results.")
    return read_state_dict(path)


def _build(name: str):
    builder = _TV[name][0]
    if name == "inception_v3":  # the pretrained net has no aux head at eval time, but its state dict does
        return lambda: builder(weights=None, aux_logits=True, init_weights=False)
    return lambda: builder(weights=None)


for _name, (_builder, _weights, _size) in _TV.items():
    register_model(ModelSpec(
        name=_name, build=_build(_name), input_shape=(3, _size, _size), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, class_names=tuple(_weights.meta["categories"]), dataset="imagenet",
        load_weights=_cache_weights,
        description=f"torchvision {_name} (ImageNet, {_size} px); GPU recommended for generation."))
