"""Real data: the embedded models' MNIST splits and user image folders."""

from .mnist import mnist_split

__all__ = ["mnist_split", "real_split"]


def real_split(model_name: str, split: str):
    """Real (images, labels) of a registry model's own data set, in model-input space."""
    from ..errors import DataError
    from ..models import get_spec
    spec = get_spec(model_name)
    if spec.dataset != "mnist":
        raise DataError(f"{model_name} has no embedded real data: give a labelled image folder "
                        "(ImageFolder layout) for ImageNet models")
    return mnist_split(split, spec.mean, spec.std)
