"""A user's image folder, in the model's preprocessing: labelled (torchvision ImageFolder layout,
root/<class>/<image>) or unlabelled (images directly in root: agreement with FP32 is the measure).

Class folders are matched by the model's class names ("3", "tench"), by class index ("0".."999", for
a subset of ImageNet), or, when there are as many folders as classes, in sorted order (the full
ImageNet validation set in its wnid folders).
"""

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
    """Load the images under ``root`` as (images, labels) in model-input space (``limit``: a seeded
    random subset). Class folders map to classes as :func:`class_indices` says."""
    from torchvision.datasets import ImageFolder
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    try:
        ds = ImageFolder(str(root), transform=model_transform(spec))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"{root} is not an ImageFolder layout (root/<class>/<image>): {exc}") from None
    remap = class_indices(ds.classes, spec)
    if not len(ds):
        raise DataError(f"no images found under {root}")
    # a limit takes a seeded random subset (the first N in folder order would be the first classes only)
    idx = (range(len(ds)) if limit is None or limit >= len(ds) else
           sorted(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:limit].tolist()))
    xs = [_decode(ds.samples[i][0], lambda i=i: ds[i][0]) for i in idx]
    return torch.stack(xs), torch.tensor([remap[ds.samples[i][1]] for i in idx])


def class_indices(folders: list[str], spec: ModelSpec) -> dict[int, int]:
    """{folder index: model class index}: by unique class name, by class index, or (exactly as many
    folders as classes) in sorted order; anything else is refused rather than guessed."""
    names = list(spec.class_names)
    if all(names.count(c) == 1 for c in folders):  # ImageNet repeats a few names ("crane"): not those
        return {i: names.index(c) for i, c in enumerate(folders)}
    if all(c.isdecimal() and int(c) < spec.num_classes for c in folders):
        return {i: int(c) for i, c in enumerate(folders)}
    if len(folders) == spec.num_classes:
        return {i: i for i in range(len(folders))}
    raise DataError(f"cannot tell which of the model's {spec.num_classes} classes the {len(folders)} class folders "
                    f"are ({', '.join(folders[:3])}...): name them by class name (as in the model's class list) "
                    f"or by class index (0..{spec.num_classes - 1}), or give all {spec.num_classes}")


def _decode(path: str, load) -> torch.Tensor:
    try:
        return load()
    except Exception as exc:  # corrupt or hostile image: name it, don't crash the app
        raise DataError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_images(root: str | Path, spec: ModelSpec, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A labelled folder (class subfolders) as (images, labels), or an unlabelled one as (images, None)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return load_image_folder(root, spec, limit)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DataError(f"no images found in {root} (give images, or class folders of images)")
    transform = model_transform(spec)

    def load(p: Path) -> torch.Tensor:
        with Image.open(p) as im:
            return transform(im)
    return torch.stack([_decode(str(p), lambda p=p: load(p)) for p in files]), None
