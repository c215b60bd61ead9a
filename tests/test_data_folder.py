"""A user's labelled ImageFolder (loaded with the model's preprocessing) and the safe unzip of one."""

import io
import zipfile

import numpy as np
import pytest
from conftest import zip_bytes  # tests/ is on the path: the suite's shared helpers
from PIL import Image

from dsg_core.data.folder import load_image_folder
from dsg_core.errors import DataError
from dsg_core.limits import Limits
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
    make_folder(tmp_path, classes=("7", "281"), per_class=1, size=300)  # a subset named by class index
    x, y = load_image_folder(tmp_path, get_spec("resnet18"))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [281, 7]  # sorted folder order: "281" < "7"


def test_inception_takes_299_pixels(tmp_path):
    make_folder(tmp_path, classes=("1",), per_class=1, size=400)
    assert load_image_folder(tmp_path, get_spec("inception_v3"))[0].shape == (1, 3, 299, 299)


def test_subset_folders_that_name_no_class_are_refused(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), per_class=1, size=40)
    with pytest.raises(DataError, match="class index"):
        load_image_folder(tmp_path, get_spec("resnet18"))


def test_unlabelled_folder_gives_images_without_labels(tmp_path):
    from dsg_core.data.folder import load_images
    make_folder(tmp_path, classes=("3",), per_class=3, size=40)
    x, y = load_images(tmp_path / "3", get_spec("resnet20_mnist"))
    assert x.shape == (3, 1, 28, 28) and y is None
    x, y = load_images(tmp_path, get_spec("resnet20_mnist"))
    assert y.tolist() == [3, 3, 3]


def test_quantize_cli_on_folders_with_and_without_labels(tmp_path, capsys):
    """The ImageNet path in miniature: evaluation on the user's folder, agreement when unlabelled."""
    import json

    from dsg_core.cli import main
    make_folder(tmp_path / "test", classes=("3", "7"), per_class=4, size=28)
    base = ["quantize", "--calib", "gaussian", "--samples", "8", "--wbits", "8", "--abits", "8", "--json"]
    assert main(base + ["--test-folder", str(tmp_path / "test")]) == 0
    labelled = json.loads(capsys.readouterr().out)
    assert 0 <= labelled["quant_top1"] <= 100 and 0 <= labelled["agreement"] <= 1
    assert main(base + ["--test-folder", str(tmp_path / "test" / "7")]) == 0
    unlabelled = json.loads(capsys.readouterr().out)
    assert unlabelled["quant_top1"] is None and unlabelled["fp32_top1"] is None and 0 <= unlabelled["agreement"] <= 1


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


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_unsafe_zip_members_are_refused(tmp_path, name):
    from dsg_core.data.archive import safe_extract
    with pytest.raises(DataError):
        safe_extract(zip_bytes({name: b"x"}), tmp_path / "out")
    assert not (tmp_path / "evil.png").exists()


def test_zip_limits_and_wrapper_folder(tmp_path):
    from dsg_core.data.archive import safe_extract
    with pytest.raises(DataError, match="limit"):
        safe_extract(zip_bytes({f"c/{i}.png": b"x" for i in range(5)}), tmp_path / "a", Limits(images=3))
    with pytest.raises(DataError, match="MiB"):
        safe_extract(zip_bytes({"c/big.png": b"x" * 4096}), tmp_path / "b", Limits(unzipped_bytes=1024))
    root = safe_extract(zip_bytes({"test/3/a.png": b"x", "test/7/b.png": b"y"}), tmp_path / "c")
    assert sorted(p.name for p in root.iterdir()) == ["3", "7"]


def test_zip_link_member_is_refused(tmp_path):
    from dsg_core.data.archive import safe_extract
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("c/link.png")
        info.external_attr = (0o120777 << 16)  # a symlink
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="links"):
        safe_extract(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "out" / "c" / "link.png").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    from dsg_core.data.archive import safe_extract
    with pytest.raises(DataError, match="not a zip"):
        safe_extract(b"PK-not-really", tmp_path / "out")
