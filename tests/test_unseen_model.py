"""The held-out model of issue 18 (bench/unseen_model.py) and the `unseen` profile of bench/reproduce.py.

No training here: the architecture, its registration, the missing-checkpoint error and the plan."""

import sys
from pathlib import Path

import pytest
import torch

from dsg_core.errors import ModelError
from dsg_core.models import get_spec, list_models, load_model, registry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import reproduce as R  # noqa: E402 - bench/ is not a package: its path goes first
import unseen_model as U  # noqa: E402 - same


class NoRows:
    rows: list = []


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the registry for the test, so that the held-out model does not leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_architecture_is_a_plain_bn_cnn_with_ten_logits():
    model = U.VGGBN().eval()
    bns = registry.bn_layer_names(model)
    assert len(bns) == len(U.WIDTHS) == 6  # BN after every conv, found by the engine
    assert not any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in model.modules())  # no depthwise
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_register_is_idempotent(own_registry):
    assert "vgg_bn_mnist" not in {s.name for s in list_models()}
    first = U.register()
    assert U.register() is first and get_spec("vgg_bn_mnist") is first
    assert [s.name for s in list_models()].count("vgg_bn_mnist") == 1
    assert first.input_shape == (1, 28, 28) and first.num_classes == 10 and first.dataset == "mnist"
    assert first.mean == get_spec("resnet20_mnist").mean and first.std == get_spec("resnet20_mnist").std


def test_a_missing_checkpoint_names_the_command_to_run(own_registry, tmp_path, monkeypatch):
    monkeypatch.setattr(U, "CHECKPOINT", tmp_path / "vgg_bn_mnist.safetensors")
    U.register()
    with pytest.raises(ModelError, match=r"missing: run `python bench/unseen_model\.py`"):
        load_model("vgg_bn_mnist")
    assert not (tmp_path / "vgg_bn_mnist.safetensors").exists()  # nothing trained behind the caller's back


def test_a_checkpoint_on_disk_loads_with_safetensors(own_registry, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    state = U.VGGBN().state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    monkeypatch.setattr(U, "CHECKPOINT", tmp_path / "w.safetensors")
    U.register()
    loaded = load_model("vgg_bn_mnist").state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_the_unseen_profile_runs_the_controls_cells_on_the_held_out_model_only():
    control, unseen = R.PROFILES["control"], R.PROFILES["unseen"]
    tasks = R.plan(unseen, NoRows())
    assert {t.model for t in tasks} == {"vgg_bn_mnist"}
    assert {t.seed for t in tasks} == set(range(10))
    assert {t.combos for t in tasks} == {tuple(tuple(c) for c in control["cells"])}
    assert {(t.source, t.pixel_range) for t in tasks} == {  # the control's sources and best's (dsg-reference
        ("gaussian", "free"), ("gaussian", "clamp-after"), ("real", "free"),  # clamped): the recipe, held out
        *((s, p) for s in ("zeroq", "dsg", "dsg-reference") for p in ("free", "clamp-after"))}
    same = ("seeds", "wave", "bits", "quantizers", "cells", "jitter", "samples", "iterations", "recon_iters",
            "epsilons")
    assert {k: unseen[k] for k in same} == {k: control[k] for k in same}
    assert "cache" not in unseen  # its own: bench/cache/unseen, beside the checkpoint


def test_the_profiles_setup_registers_the_model(own_registry):
    R.setup(R.PROFILES["control"])  # no setup: nothing added
    assert "vgg_bn_mnist" not in {s.name for s in list_models()}
    R.setup(R.PROFILES["unseen"])
    R.setup(R.PROFILES["unseen"])  # main() may run it again
    assert get_spec("vgg_bn_mnist").name == "vgg_bn_mnist"


def test_pixel_range_documents_follow_one_rule():
    assert R.control_doc("control") == "pixel-range.md"
    assert R.control_doc("control-sources") == "pixel-range-sources.md"
    assert R.control_doc("unseen") == "pixel-range-unseen.md"


def test_the_second_held_out_model_is_all_convolutional_and_registers_beside_the_first(own_registry, tmp_path,
                                                                                        monkeypatch):
    model = U.AllConvBN().eval()
    assert len(registry.bn_layer_names(model)) == 5
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.MaxPool2d)) for m in model.modules())
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    monkeypatch.setattr(U, "CHECKPOINT", tmp_path / "vgg_bn_mnist.safetensors")
    U.register()
    assert {"vgg_bn_mnist", "allconv_bn_mnist"} <= {s.name for s in list_models()}
    assert U.checkpoint("allconv_bn_mnist") == tmp_path / "allconv_bn_mnist.safetensors"
    with pytest.raises(ModelError, match=r"run `python bench/unseen_model\.py --model allconv_bn_mnist`"):
        load_model("allconv_bn_mnist")
    lenet = U.LeNetBN().eval()
    assert len(registry.bn_layer_names(lenet)) == 2 and lenet(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in lenet.modules())  # a flattened map
    assert "lenet_bn_mnist" in {s.name for s in list_models()}
