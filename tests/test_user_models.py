"""User model files: state dicts validated against the architecture; programs only when trusted."""

import dataclasses
import json

import pytest
import torch
import torch.nn as nn

from dsg_core.cli import main
from dsg_core.errors import ModelError
from dsg_core.models import get_spec, load_model
from dsg_core.models.user import load_user_model, load_weights_for, requires_bn


def test_state_dict_round_trip_registers_a_user_model(tmp_path):
    from safetensors.torch import save_file
    model = load_model("resnet20_mnist")
    path = tmp_path / "mine.safetensors"
    save_file(model.state_dict(), str(path))
    spec = load_user_model(path, "resnet20_mnist")
    assert spec.name == "user:mine" and spec.input_shape == (1, 28, 28)
    assert torch.equal(load_model(spec.name).fc.weight, model.fc.weight)


def test_wrong_classes_and_channels_are_named(tmp_path):
    sd = load_model("resnet20_mnist").state_dict()
    bad = dict(sd, **{"fc.weight": torch.zeros(5, 64), "fc.bias": torch.zeros(5)})
    torch.save(bad, tmp_path / "c.pt")
    with pytest.raises(ModelError, match="wrong number of classes"):
        load_weights_for("resnet20_mnist", tmp_path / "c.pt")
    bad = dict(sd, **{"conv1.weight": torch.zeros(16, 3, 3, 3)})
    torch.save(bad, tmp_path / "s.pt")
    with pytest.raises(ModelError, match="wrong input shape"):
        load_weights_for("resnet20_mnist", tmp_path / "s.pt")


def test_programs_need_explicit_trust(tmp_path):
    model = load_model("resnet20_mnist")
    fixed = torch.export.export(model, (torch.zeros(2, 1, 28, 28),))
    torch.export.save(fixed, str(tmp_path / "fixed.pt2"))
    with pytest.raises(ModelError, match="dynamic batch"):
        load_user_model(tmp_path / "fixed.pt2", "resnet20_mnist", trust_program=True)
    ep = torch.export.export(model, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "whole.pt2"
    torch.export.save(ep, str(path))
    with pytest.raises(ModelError, match="--trust-model-file"):
        load_user_model(path, "resnet20_mnist")
    spec = load_user_model(path, "resnet20_mnist", trust_program=True)
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(load_model(spec.name)(x), model(x), atol=1e-5)


def test_no_bn_model_explains_why():
    with pytest.raises(ModelError, match="running mean/variance"):
        requires_bn(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_cli_accepts_user_state_dict(tmp_path, capsys):
    torch.save(load_model("resnet20_mnist").state_dict(), tmp_path / "w.pt")
    code = main(["quantize", "--model-file", str(tmp_path / "w.pt"), "--calib", "real", "--wbits", "8", "--abits", "8",
                 "--quantizer", "minmax", "--eval-samples", "100", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["model"] == "user:w" and out["quant_top1"] > 90


def test_registry_api_registers_replaces_and_forgets_user_models():
    from dsg_core.models import is_user_model, register_user_model, unregister_model
    base = get_spec("resnet20_mnist")
    spec = register_user_model(dataclasses.replace(base, name="user:api", default=False))
    assert get_spec("user:api") is spec and is_user_model("user:api")
    again = register_user_model(dataclasses.replace(base, name="user:api", default=False, description="v2"))
    assert get_spec("user:api") is again  # a reloaded file replaces the earlier one
    unregister_model("user:api")
    assert not is_user_model("user:api")
    with pytest.raises(ModelError, match="unknown model"):
        get_spec("user:api")
    with pytest.raises(ModelError, match="user:"):
        register_user_model(dataclasses.replace(base, name="resnet20_mnist"))
    with pytest.raises(ModelError, match="only user models"):
        unregister_model("resnet20_mnist")
    assert get_spec("resnet20_mnist") is base
