"""The on-disk FP32 reference logits: reused only for the same model and images, never wrong."""

import pytest
import torch

from dsg_core import logit_cache
from dsg_core.evaluate import logits
from dsg_core.models import load_model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_CACHE", str(tmp_path))
    return tmp_path / "logits"


@pytest.fixture
def images():
    return torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _no_forward(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the FP32 model ran although its logits were cached")
    monkeypatch.setattr(logit_cache, "logits", fail)


def test_second_call_reads_the_file_and_gives_the_same_logits(cache, images, monkeypatch):
    model = load_model("resnet20_mnist")
    first = logit_cache.fp32_logits(model, images)
    assert len(list(cache.glob("*.npy"))) == 1
    _no_forward(monkeypatch)
    assert torch.equal(logit_cache.fp32_logits(model, images), first)
    assert torch.allclose(first, logits(model, images))


def test_other_weights_buffers_or_images_miss_the_cache(cache, images, tiny_net):
    base = logit_cache.fp32_logits(tiny_net, images)
    with torch.no_grad():
        tiny_net.bn2.running_mean += 0.3  # a buffer, not a parameter
    moved = logit_cache.fp32_logits(tiny_net, images)
    assert not torch.allclose(base, moved) and torch.allclose(moved, logits(tiny_net, images))
    with torch.no_grad():
        tiny_net.fc.weight.mul_(2)
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, images), logits(tiny_net, images))
    other = images.flip(0)
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, other), logits(tiny_net, other))
    assert len(list(cache.glob("*.npy"))) == 4


def test_same_weights_other_architecture_miss_the_cache(cache, images, tiny_net):
    logit_cache.fp32_logits(tiny_net, images)
    tiny_net.relu = torch.nn.LeakyReLU(0.5)  # no weights change, only the repr
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, images), logits(tiny_net, images))


def test_corrupt_or_unwritable_cache_only_means_computing_again(cache, images, tiny_net, tmp_path, monkeypatch):
    want = logits(tiny_net, images)
    logit_cache.fp32_logits(tiny_net, images)
    (path,) = cache.glob("*.npy")
    path.write_bytes(b"not an array")
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, images), want)
    assert path.stat().st_size > 12 * 10 * 4  # rewritten
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DSG_CACHE", str(blocker))
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, images), want)


class Scaled(torch.nn.Module):
    """Output depends on a plain float and a plain (unregistered) tensor attribute."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(28 * 28, 10)
        self.gain, self.shift = 1.0, torch.zeros(10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.gain + self.shift


def test_plain_attributes_are_part_of_the_key(cache, images):
    torch.manual_seed(0)
    net = Scaled()
    logit_cache.fp32_logits(net, images)
    net.gain = 3.0
    assert torch.allclose(logit_cache.fp32_logits(net, images), logits(net, images))
    net.shift = torch.ones(10)
    assert torch.allclose(logit_cache.fp32_logits(net, images), logits(net, images))
    assert len(list(cache.glob("*.npy"))) == 3


def test_an_edited_forward_misses_the_cache(cache, images, tmp_path, monkeypatch):
    """Same class name, same weights, a changed ``forward`` in the file that defines it."""
    import importlib
    import sys
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no .pyc of the first version to reload
    monkeypatch.syspath_prepend(str(tmp_path))
    src = ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.fc = torch.nn.Linear(784, 10)\n"
           "    def forward(self, x):\n        return self.fc(x.flatten(1)) * {}\n")
    (tmp_path / "edited_net.py").write_text(src.format(1))
    mod = importlib.import_module("edited_net")
    net = mod.Net()
    first = logit_cache.fp32_logits(net, images)
    (tmp_path / "edited_net.py").write_text(src.format(2))
    edited = importlib.reload(mod).Net()
    edited.load_state_dict(net.state_dict())
    assert torch.allclose(logit_cache.fp32_logits(edited, images), 2 * first, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # a legacy input we still read
def test_programs_and_unreadable_models_are_computed_not_cached(cache, images, tiny_net, monkeypatch):
    scripted = torch.jit.script(tiny_net)
    assert torch.allclose(logit_cache.fp32_logits(scripted, images), logits(tiny_net, images))
    assert not cache.exists()

    def fail(*a):
        raise RuntimeError("a tensor that cannot be viewed as bytes")
    monkeypatch.setattr(logit_cache, "fingerprint", fail)
    assert torch.allclose(logit_cache.fp32_logits(tiny_net, images), logits(tiny_net, images))
    assert not cache.exists()


def test_the_cache_keeps_only_the_newest_files(cache, images, tiny_net, monkeypatch):
    monkeypatch.setattr(logit_cache, "MAX_FILES", 2)
    for k in range(4):
        logit_cache.fp32_logits(tiny_net, images[k:])
    assert len(list(cache.glob("*.npy"))) == 2


def test_nonfinite_logits_are_not_cached(cache, images, tiny_net):
    with torch.no_grad():
        tiny_net.fc.bias.fill_(float("nan"))
    assert torch.isnan(logit_cache.fp32_logits(tiny_net, images)).all()
    assert not cache.exists() or not list(cache.glob("*.npy"))
