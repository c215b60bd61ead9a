"""Real data: the embedded models' MNIST splits and user image folders."""

from .mnist import mnist_split

__all__ = ["mnist_split", "real_split"]


def real_split(model_name: str, split: str):
    """Real (images, labels) of a registry model's own data set (a carded model's folders), in model-input space."""
    from ..errors import DataError
    from ..models import get_spec
    spec = get_spec(model_name)
    folder = spec.real_folder if split == "train" else spec.test_folder
    if folder:  # a model card's folder (test images may be unlabelled: labels None)
        from .folder import load_images
        return load_images(folder, spec)
    if spec.dataset == "folder":
        raise DataError(f"{model_name} has no {'real' if split == 'train' else 'test'} images: add "
                        f"{'real_folder' if split == 'train' else 'test_folder'} to its model card, or give a folder")
    if spec.dataset != "mnist":
        raise DataError(f"{model_name} has no embedded real data: give a labelled image folder "
                        "(ImageFolder layout) for ImageNet models")
    return mnist_split(split, spec.mean, spec.std)
