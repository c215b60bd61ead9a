"""A user's image folder, in the model's preprocessing: labelled (torchvision ImageFolder layout,
root/<class>/<image>) or unlabelled (images directly in root: agreement with FP32 is the measure).

Class folders are matched by the model's class names ("3", "tench"), by class index ("0".."999", for
a subset of ImageNet), or, when there are as many folders as classes, in sorted order (the full
ImageNet validation set in its wnid folders).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from PIL import Image

from ..errors import DataError
from ..limits import Limits, limits
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


def load_image_folder(root: str | Path, spec: ModelSpec, limit: int | None = None,
                      limit_of: Limits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the images under ``root`` as (images, labels) in model-input space (``limit``: a seeded
    random subset). Class folders map to classes as :func:`class_indices` says. Resource limits
    (``dsg_core.limits``) are checked from the file list and the image headers before decoding."""
    from torchvision.datasets import ImageFolder
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root.name or root}")
    try:
        ds = ImageFolder(str(root))  # lists the files; decoding is ours (limits first)
    except (FileNotFoundError, RuntimeError):
        raise DataError(f"folder {root.name!r} is not an ImageFolder layout (root/<class>/<image>) "
                        "or has no images") from None
    remap = class_indices(ds.classes, spec)
    if not len(ds):
        raise DataError(f"no images found under {root.name!r}")
    # a limit takes a seeded random subset (the first N in folder order would be the first classes only)
    idx = (range(len(ds)) if limit is None or limit >= len(ds) else
           sorted(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:limit].tolist()))
    x = decode_images([Path(ds.samples[i][0]) for i in idx], root, spec, limit_of, rgb_first=True)
    return x, torch.tensor([remap[ds.samples[i][1]] for i in idx])


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


def decode_images(paths: list[Path], root: Path, spec: ModelSpec, limit_of: Limits | None = None, *,
                  rgb_first: bool = False) -> torch.Tensor:
    """Decode into one preallocated tensor (no second copy from a stack), after refusing, from the
    file count and the headers alone, what would exceed the limits. Messages name files relative
    to ``root`` (never a server path). ``rgb_first``: convert as torchvision's ImageFolder loader does."""
    lim = limit_of or limits()
    shape = tuple(spec.input_shape)
    need = len(paths) * math.prod(shape) * 4
    if len(paths) > lim.images:
        raise DataError(f"{len(paths)} images; the limit is {lim.images} (DSG_LIMIT_IMAGES)")
    if need > lim.decoded_bytes:
        raise DataError(f"{len(paths)} images at the model's input size {shape} take {need / 2**20:.0f} MiB; "
                        f"the limit is {lim.decoded_bytes / 2**20:.0f} MiB "
                        f"({lim.decoded_bytes // (need // len(paths))} images): give fewer images")
    total = sum(_pixels(p, root, lim) for p in paths)
    if total > lim.total_pixels:
        raise DataError(f"the images hold {total / 1e6:.0f} megapixels in all; the limit is "
                        f"{lim.total_pixels / 1e6:.0f} (DSG_LIMIT_TOTAL_PIXELS)")
    transform = model_transform(spec)
    out = torch.empty((len(paths), *shape))
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                out[i] = transform(im.convert("RGB") if rgb_first else im)
        except Exception as exc:  # corrupt or hostile image: name it, don't crash the app
            raise DataError(f"cannot decode {_name(p, root)}: {type(exc).__name__}") from None
    return out


def _pixels(path: Path, root: Path, lim: Limits) -> int:
    """An image's pixel count from its header (nothing decoded); refuses one over ``image_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by our own limit
            with Image.open(path) as im:
                w, h = im.size
    except Exception as exc:  # not an image, or beyond PIL's own guard
        raise DataError(f"cannot decode {_name(path, root)}: {type(exc).__name__}") from None
    if w * h > lim.image_pixels:
        raise DataError(f"{_name(path, root)} is {w}x{h} pixels; the limit is {lim.image_pixels / 1e6:.0f} "
                        "megapixels per image: scale it down")
    return w * h


def _name(path: Path, root: Path) -> str:
    try:
        return repr(str(Path(path).relative_to(root)))
    except ValueError:
        return repr(Path(path).name)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def load_images(root: str | Path, spec: ModelSpec, limit: int | None = None,
                limit_of: Limits | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A labelled folder (class subfolders) as (images, labels), or an unlabelled one as (images, None)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root.name or root}")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return load_image_folder(root, spec, limit, limit_of)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DataError(f"no images found in {root.name!r} (give images, or class folders of images)")
    return decode_images(files, root, spec, limit_of), None
