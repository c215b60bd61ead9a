"""A user's labelled ImageFolder, loaded with the model's preprocessing."""

import numpy as np
import pytest
from PIL import Image

from dsg_core.data.folder import load_image_folder
from dsg_core.errors import DataError
from dsg_core.models import get_spec


def make_folder(root, classes=("3", "7"), per_class=2, size=40):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_digit_folders_map_to_class_names(tmp_path):
    make_folder(tmp_path)
    x, y = load_image_folder(tmp_path, get_spec("resnet20_mnist"))
    assert x.shape == (4, 1, 28, 28)
    assert sorted(y.tolist()) == [3, 3, 7, 7]


def test_imagenet_preprocessing_is_resize_and_center_crop(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=1, size=300)
    x, y = load_image_folder(tmp_path, get_spec("resnet18"))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 1]


def test_bad_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nope", get_spec("resnet20_mnist"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        load_image_folder(tmp_path / "empty", get_spec("resnet20_mnist"))
    (tmp_path / "c" / "1").mkdir(parents=True)
    (tmp_path / "c" / "1" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError):
        load_image_folder(tmp_path / "c", get_spec("resnet20_mnist"))
