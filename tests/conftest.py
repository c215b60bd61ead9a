import io
import os
import zipfile

import pytest
import torch
import torch.nn as nn

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """The suite's caches (parsed MNIST, FP32 logits) in a folder of its own, for it and every
    process it starts: a developer's ~/.cache can neither help nor mislead a test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSG_CACHE", str(tmp_path_factory.mktemp("dsg_cache")))
        yield


class TinyBNNet(nn.Module):
    """Two conv-BN-ReLU layers and a classifier: fast enough for loss and hook tests."""

    def __init__(self, c: int = 1, k: int = 10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(6, k)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    net = TinyBNNet()
    with torch.no_grad():  # non-trivial running statistics
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A zip archive in memory: ``{member name: bytes}`` (upload and extraction tests)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()
