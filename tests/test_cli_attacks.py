"""Hostile or careless CLI input (issue 19, items 8, 9, 12): one `error:` line and exit 2, before any
work, instead of a traceback after it or a silently wrong result."""

from __future__ import annotations

import time

import pytest
import torch

from dsg_core.cli import main
from dsg_core.errors import DataError
from dsg_core.generation import SyntheticSet


def refused(capsys, *argv: str, match: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def a_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("sets") / "four.safetensors"
    assert main(["generate", "--samples", "4", "--iterations", "2", "--out", str(path), "--quiet"]) == 0
    return path


def test_generate_checks_its_output_path_before_generating(capsys, tmp_path, monkeypatch):
    """Attack: --out naming a directory failed with IsADirectoryError *after* the whole generation."""
    import dsg_core.generation as generation
    monkeypatch.setattr(generation, "generate_named", lambda *a, **k: pytest.fail("generated before the check"))
    refused(capsys, "generate", "--samples", "4", "--iterations", "2", "--out", str(tmp_path),
            match="is a directory")
    refused(capsys, "generate", "--out", str(tmp_path / "nope" / "x.safetensors"), match="does not exist")


@pytest.mark.parametrize("argv, match", [
    (["generate", "--samples", "1000000000", "--iterations", "1"], "the limit for one set is 2.0 GiB"),
    (["generate", "--samples", "-5"], "--samples must be at least 1, not -5"),
    (["generate", "--seed", "100000000000000000000000"], "--seed must be 0..4294967295"),
    (["generate", "--epsilon", "inf"], "--epsilon must be a finite number"),
    (["generate", "--lr", "nan"], "--lr must be a finite number"),
    (["quantize", "--calib", "gaussian", "--eval-samples", "-995"], "--eval-samples must be at least 1, not -995"),
    (["quantize", "--calib", "gaussian", "--samples", "-5"], "--samples must be at least 1, not -5"),
    (["quantize", "--calib", "gaussian", "--samples", "100000000"], "GiB; the limit for one set"),
    (["quantize", "--calib", "gaussian", "--range-jitter", "1e300"], "factors must be positive numbers up to 100"),
    (["compare", "--seeds", "a"], "--seeds takes comma-separated whole numbers"),
    (["compare", "--seeds", "-1"], "--seeds must be whole numbers in 0..4294967295"),
    (["qat", "--epochs", "-5"], "--epochs must be at least 0, not -5"),
])
def test_numbers_are_checked_up_front(capsys, tmp_path, argv, match):
    """Attacks: --eval-samples -995 scored 5 images and reported 100%; --samples -5 was accepted;
    --seed 1e23, --range-jitter 1e300, --seeds a and --samples 100000000 --calib gaussian (313 GB)
    ended in tracebacks; generate --samples 1000000000 was accepted (2.4 GB, an ETA of 4000 h)."""
    if argv[0] == "generate":
        argv = argv + ["--out", str(tmp_path / "x.safetensors")]
    t0 = time.perf_counter()
    refused(capsys, *argv, match=match)
    assert time.perf_counter() - t0 < 30  # before any work


@pytest.mark.parametrize("real_samples", ["0", "-3"])
def test_diagnose_needs_real_samples(capsys, a_set, real_samples):
    refused(capsys, "diagnose", "--samples", str(a_set), "--real-samples", real_samples, match="--real-samples")


@pytest.mark.parametrize("n, dtype, match", [(0, torch.float32, "no images"), (1, torch.float32, "at least 2"),
                                             (4, torch.int8, "images are int8")])
def test_diagnose_refuses_sets_it_cannot_measure(capsys, tmp_path, a_set, n, dtype, match):
    """Attack: diagnose on a set of 0 or 1 image, or of int8 images, ended in tracebacks."""
    s = SyntheticSet.load(a_set)
    s.images = s.images[:n].to(dtype)
    s.save(tmp_path / "bad.safetensors")
    refused(capsys, "diagnose", "--samples", str(tmp_path / "bad.safetensors"), "--real-samples", "16", match=match)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_half_and_double_sets_are_converted(capsys, tmp_path, a_set, dtype):
    s = SyntheticSet.load(a_set)
    s.images = s.images.to(dtype)
    s.save(tmp_path / "other.safetensors")
    assert main(["diagnose", "--samples", str(tmp_path / "other.safetensors"), "--real-samples", "16", "--json"]) == 0
    assert '"effective_rank"' in capsys.readouterr().out


def _checkpoint(path, cfg, **change):
    from dsg_core.gdfq.qat import CHECKPOINT_FORMAT
    state = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": 1, "source": {}, "ptq_top1": 50.0,
             "curve": [], "seconds": 1.0, **change}
    torch.save({k: v for k, v in state.items() if v is not None}, path)
    return path


@pytest.mark.parametrize("change, match", [
    ({"config": None}, "'config' is missing"),
    ({"epoch": "3"}, "'epoch' is missing or not a int"),
    ({"curve": 5}, "'curve' is missing or not a list"),
    ({"epoch": -5}, "negative epoch"),
    ({"model": {}}, "model and optimizer"),
    ({"source": {"nope": 1}}, "damaged: KeyError"),
])
def test_damaged_qat_checkpoints_are_data_errors(tmp_path, change, match):
    """Attack: a checkpoint missing its config (KeyError), with wrong types (AttributeError, TypeError,
    RuntimeError), or with epoch -5 (ran extra epochs)."""
    from dsg_core.gdfq.qat import QATConfig, make_source, resume
    from dsg_core.models import get_spec, load_model
    cfg = QATConfig(epochs=1, iters_per_epoch=1, warmup_epochs=0).validate()  # a generator: its state is read
    spec = get_spec("resnet20_mnist")
    model = load_model(spec.name)
    path = _checkpoint(tmp_path / "c.pt", cfg, **change)
    with pytest.raises(DataError, match=match):
        resume(path, cfg, model, make_source(model, spec, cfg, None, "cpu"))


def test_damaged_checkpoint_through_the_cli(capsys, tmp_path):
    from dsg_core.gdfq.qat import QATConfig
    path = _checkpoint(tmp_path / "c.pt", QATConfig(), config=None)
    refused(capsys, "qat", "--checkpoint", str(path), "--eval-samples", "50", match="'config' is missing")
