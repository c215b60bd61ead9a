"""torchvision ImageNet models, with weights only from the local torch cache or a file you name.

Nothing is downloaded: if the pretrained file is not in ``$TORCH_HOME/hub/checkpoints`` the loader
raises a ModelError that names the file to place there (or pass ``--weights FILE``). torchvision is
imported only when one of these models is used (it costs seconds at start-up otherwise).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ModelError
from .registry import ModelSpec, read_state_dict, register_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# name -> (torchvision builder name, weights enum name, input size)
_TV = {
    "resnet18": ("resnet18", "ResNet18_Weights", 224),
    "resnet50": ("resnet50", "ResNet50_Weights", 224),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights", 224),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_Weights", 224),
    "inception_v3": ("inception_v3", "Inception_V3_Weights", 299),
}


def _weights(name: str):
    import torchvision.models as tvm
    return getattr(tvm, _TV[name][1]).IMAGENET1K_V1


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    return tuple(_weights("resnet18").meta["categories"])


def cached_weights_path(name: str) -> Path:
    """Where torch's hub cache keeps the pretrained file for ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_weights(name).url).name


def _cache_weights(spec: ModelSpec, _unused) -> dict:
    path = cached_weights_path(spec.name)
    if not path.exists():
        raise ModelError(
            f"pretrained weights for {spec.name} are not available offline: expected {path}. "
            f"Copy the file there (torchvision's {_TV[spec.name][1]}.IMAGENET1K_V1) or pass a local "
            "weights file (--weights FILE). A randomly initialised model is never used for results.")
    return read_state_dict(path)


def _build(name: str):
    def build():
        import torchvision.models as tvm
        builder = getattr(tvm, _TV[name][0])
        if name == "inception_v3":  # the pretrained state dict includes the aux head
            return builder(weights=None, aux_logits=True, init_weights=False)
        return builder(weights=None)
    return build


for _name, (_builder, _weights_name, _size) in _TV.items():
    register_model(ModelSpec(
        name=_name, build=_build(_name), input_shape=(3, _size, _size), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, classes=imagenet_classes, dataset="imagenet", load_weights=_cache_weights,
        description=f"torchvision {_name} (ImageNet, {_size} px); GPU recommended for generation."))
