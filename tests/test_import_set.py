"""``import-set``: image folders, .npy arrays and safetensors files from other tools become labelled,
validated synthetic sets; foreign sets never pass for DSG's."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dsg_core import provenance as P
from dsg_core.cli import main
from dsg_core.data.imported import content_hash, import_set
from dsg_core.errors import ConfigError, DataError
from dsg_core.generation import GenerationConfig, SyntheticSet
from dsg_core.models import get_spec

MODEL = "resnet20_mnist"
SPEC = get_spec(MODEL)
MEAN, STD = SPEC.mean[0], SPEC.std[0]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def pixels(n=5, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def test_npy_in_pixel_units_is_normalized_with_the_models_mean_and_std(capsys, tmp_path):
    x = pixels()
    np.save(tmp_path / "mct.npy", x)
    out = tmp_path / "mct.safetensors"
    code, text, _ = run_cli(capsys, "import-set", str(tmp_path / "mct.npy"), "--label", "MCT", "--model", MODEL,
                            "--out", str(out), "--json")
    summary = json.loads(text)
    assert code == 0 and summary["label"] == "MCT" and summary["samples"] == 5
    s = SyntheticSet.load(out)
    assert s.label == "MCT" and s.imported and s.model == MODEL
    torch.testing.assert_close(s.images, (torch.from_numpy(x) - MEAN) / STD)
    assert s.config["source"] == "mct.npy" and s.config["file_hash"] == content_hash(tmp_path / "mct.npy")
    assert s.config["kind"] == "npy" and s.config["normalized"] is False and s.config["date"][:4].isdigit()
    assert s.provenance["source_hash"] == P.source_hash() and s.provenance["config_hash"] == P.config_hash(s.config)


def test_npy_without_channel_axis_uint8_and_already_normalized(tmp_path):
    x = pixels(3)
    np.save(tmp_path / "hw.npy", x[:, 0])
    expected = (torch.from_numpy(x) - MEAN) / STD
    torch.testing.assert_close(import_set(tmp_path / "hw.npy", SPEC, label="a").images, expected)
    np.save(tmp_path / "u8.npy", (x * 255).round().astype(np.uint8))
    u8 = import_set(tmp_path / "u8.npy", SPEC, label="a").images
    assert torch.allclose(u8, expected, atol=1 / 255 / STD)
    z = np.random.default_rng(1).normal(size=(3, 1, 28, 28)).astype(np.float64) * 3
    np.save(tmp_path / "z.npy", z)
    with pytest.raises(DataError, match=r"not \[0, 1\].*--normalized"):
        import_set(tmp_path / "z.npy", SPEC, label="a")
    s = import_set(tmp_path / "z.npy", SPEC, label="a", normalized=True)
    assert s.images.dtype == torch.float32 and torch.allclose(s.images, torch.from_numpy(z).float())


def test_image_folder_is_preprocessed_as_the_model_does(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 255  # a red 40x40 RGB image: one gray channel, 28x28, for the MNIST model
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(folder / "b.jpg")
    s = import_set(folder, SPEC, label="folder set")
    assert s.images.shape == (2, 1, 28, 28) and s.config["kind"] == "folder"
    gray_red = round(0.299 * 255) / 255  # PIL's L conversion of pure red
    assert s.images[0].mean().item() == pytest.approx((gray_red - MEAN) / STD, abs=1e-2)
    assert s.images[1].mean().item() == pytest.approx((1 - MEAN) / STD, abs=2e-2)


def test_a_dsg_set_file_keeps_its_images_and_targets(tmp_path):
    src = SyntheticSet(images=torch.randn(4, 1, 28, 28), model=MODEL, config=GenerationConfig().to_dict(),
                       targets=torch.arange(4))
    src.save(tmp_path / "dsg.safetensors")
    s = import_set(tmp_path / "dsg.safetensors", SPEC, label="theirs")
    assert torch.equal(s.images, src.images) and torch.equal(s.targets, src.targets) and s.label == "theirs"


def test_a_plain_safetensors_tensor_is_read_as_pixels(tmp_path):
    from safetensors.torch import save_file
    x = torch.from_numpy(pixels(2))
    save_file({"batch": x}, str(tmp_path / "plain.safetensors"))
    torch.testing.assert_close(import_set(tmp_path / "plain.safetensors", SPEC, label="p").images, (x - MEAN) / STD)
    save_file({"a": x, "b": x.clone()}, str(tmp_path / "two.safetensors"))
    with pytest.raises(DataError, match="name the images 'images'"):
        import_set(tmp_path / "two.safetensors", SPEC, label="p")


@pytest.mark.parametrize("make, match", [
    (lambda d: np.save(d / "bad.npy", np.zeros((2, 3, 28, 28), np.float32)), r"shape \(2, 3, 28, 28\).*takes"),
    (lambda d: np.save(d / "bad.npy", np.zeros((0, 1, 28, 28), np.float32)), "no images"),
    (lambda d: np.save(d / "bad.npy", np.full((2, 1, 28, 28), np.nan, np.float32)), "NaN"),
    (lambda d: np.save(d / "bad.npy", np.array([{"a": 1}], dtype=object)), "not a readable .npy"),
    (lambda d: (d / "bad.npy").write_bytes(b"garbage"), "not a readable .npy"),
    (lambda d: (d / "bad.gif").write_bytes(b"GIF89a"), "unknown kind of file '.gif'"),
    (lambda d: (d / "bad").mkdir(), "no images found"),
    (lambda d: (d / "bad.safetensors").write_bytes(b"\x00" * 20), "not a readable safetensors"),
])
def test_bad_input_is_one_line_error_exit_2(capsys, tmp_path, make, match):
    make(tmp_path)
    path = next(tmp_path.glob("bad*"))
    out = tmp_path / "o.safetensors"
    code, _, err = run_cli(capsys, "import-set", str(path), "--label", "x", "--model", MODEL, "--out", str(out))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err), err
    assert not out.exists()


def test_normalized_nan_is_refused_too(tmp_path):
    np.save(tmp_path / "n.npy", np.full((2, 1, 28, 28), np.inf, np.float32))
    with pytest.raises(DataError, match="NaN or infinite"):
        import_set(tmp_path / "n.npy", SPEC, label="x", normalized=True)


def test_the_set_size_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.zeros((10, 1, 28, 28), np.float32))
    monkeypatch.setenv("DSG_LIMIT_SET_BYTES", str(4 * 28 * 28 * 5))
    with pytest.raises(ConfigError, match="DSG_LIMIT_SET_BYTES"):
        import_set(tmp_path / "big.npy", SPEC, label="x")


def test_foreign_sets_with_empty_or_unknown_configs_never_pass_for_dsg(tmp_path):
    plain = SyntheticSet(images=torch.zeros(2, 1, 28, 28), model=MODEL, config={})
    assert plain.label == "imported" and plain.imported
    odd = SyntheticSet(images=torch.zeros(2, 1, 28, 28), model=MODEL, config={"tool": "mct", "iters": 100})
    assert odd.label == "imported"
    assert SyntheticSet.load(plain.save(tmp_path / "p.safetensors")).label == "imported"
    assert SyntheticSet(images=plain.images, model=MODEL, config=GenerationConfig().to_dict()).label == \
        "DSG (SDA+LSE+SCI)"


def test_quantize_shows_an_imported_sets_label(capsys, tmp_path):
    np.save(tmp_path / "x.npy", pixels(8))
    assert main(["import-set", str(tmp_path / "x.npy"), "--label", "Their tool", "--model", MODEL,
                 "--out", str(tmp_path / "x.safetensors")]) == 0
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "quantize", "--calib", str(tmp_path / "x.safetensors"), "--wbits", "8", "--abits",
                           "8", "--eval-samples", "50", "--json")
    assert code == 0 and json.loads(out)["label"] == "Their tool"


def test_the_command_in_a_fresh_process_writes_next_to_the_cwd_by_default(tmp_path):
    np.save(tmp_path / "mine.npy", pixels(2))
    done = subprocess.run([sys.executable, "-m", "dsg_core", "import-set", "mine.npy", "--label", "mine",
                           "--model", MODEL], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mine: 2 images imported from mine.npy" in done.stdout
    assert SyntheticSet.load(tmp_path / "mine.safetensors").label == "mine"
    bad = subprocess.run([sys.executable, "-m", "dsg_core", "import-set", "mine.npy", "--label", "mine",
                          "--model", MODEL, "--out", "mine.npy"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_a_file_whose_config_is_not_an_object_is_refused_as_damaged(tmp_path):
    from safetensors.torch import save
    s = SyntheticSet(images=torch.zeros(2, 1, 28, 28), model=MODEL, config={})
    (tmp_path / "odd.safetensors").write_bytes(save(s.tensors(), metadata={**s.metadata(), "config": "[1, 2]"}))
    with pytest.raises(DataError, match="damaged metadata"):
        SyntheticSet.load(tmp_path / "odd.safetensors")
