"""A user's labelled image folder (torchvision ImageFolder layout: root/<class>/<image>)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..errors import DataError
from ..models import ModelSpec

Image.MAX_IMAGE_PIXELS = 89_478_485  # PIL's decompression-bomb guard, kept on explicitly


def model_transform(spec: ModelSpec):
    """The model's preprocessing: ImageNet-style resize + center crop, or a plain resize for small nets."""
    from torchvision import transforms as T
    c, h, w = spec.input_shape
    if spec.dataset == "imagenet":
        resize = 342 if h == 299 else 256
        steps = [T.Resize(resize), T.CenterCrop(h)]
    else:
        steps = [T.Resize((h, w))]
    steps += [T.Grayscale(1) if c == 1 else T.Lambda(lambda im: im.convert("RGB")), T.ToTensor(),
              T.Normalize(spec.mean, spec.std)]
    return T.Compose(steps)


def load_image_folder(root: str | Path, spec: ModelSpec, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load every image under ``root`` as (images, labels) in model-input space.

    Class folders are matched to the model's class names when they are names of it (e.g. "3" for a
    digit model); otherwise they are taken in sorted order as class indices 0..K-1.
    """
    from torchvision.datasets import ImageFolder
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    try:
        ds = ImageFolder(str(root), transform=model_transform(spec))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"{root} is not an ImageFolder layout (root/<class>/<image>): {exc}") from None
    names = list(spec.class_names)
    if all(c in names for c in ds.classes):
        remap = {i: names.index(c) for i, c in enumerate(ds.classes)}
    elif len(ds.classes) <= spec.num_classes:
        remap = {i: i for i in range(len(ds.classes))}
    else:
        raise DataError(f"{len(ds.classes)} class folders but the model has {spec.num_classes} classes")
    n = len(ds) if limit is None else min(limit, len(ds))
    xs, ys = [], []
    for i in range(n):
        try:
            x, y = ds[i]
        except Exception as exc:  # corrupt or hostile image: name it, don't crash the app
            raise DataError(f"cannot decode {ds.samples[i][0]}: {type(exc).__name__}: {exc}") from None
        xs.append(x)
        ys.append(remap[y])
    if not xs:
        raise DataError(f"no images found under {root}")
    return torch.stack(xs), torch.tensor(ys)
