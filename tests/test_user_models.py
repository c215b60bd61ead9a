"""User model files: state dicts validated against the architecture; programs only when trusted."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from dsg_core.cli import main
from dsg_core.data import real_split
from dsg_core.errors import DataError, DSGError, ModelError
from dsg_core.models import get_spec, list_models, load_model, unregister_model
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


# ------------------------------------------------------------------ bad input: a one-line error, nothing registered
DEFS = '''
import torch.nn as nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))

def tiny():
    return Tiny()

def feature_map():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))

def no_bn():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))

def raises():
    raise RuntimeError("out of coffee")

def not_a_module():
    return 42
'''
CARD = {"input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25]}


@pytest.fixture
def defs(tmp_path):
    (tmp_path / "nets.py").write_text(DEFS)
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    return tmp_path


def _names():
    return [s.name for s in list_models()]


def _refused(match, exc=DSGError, **kw):
    before = _names()
    with pytest.raises(exc, match=match) as info:
        load_user_model(**kw)
    assert "\n" not in str(info.value) and _names() == before  # one line, nothing registered


@pytest.mark.parametrize("func, match", [
    ("raises", r"raises\(\) raised RuntimeError: out of coffee"),
    ("missing", r"has no function 'missing' \(it has: .*tiny"),
    ("not_a_module", "returned a int, not a torch.nn.Module"),
    ("no_bn", "no BatchNorm layers"),
    ("feature_map", r"outputs \(2, 4, 26, 26\).*classifier outputs \(batch, classes\)"),
])
def test_bad_definitions_are_refused(defs, func, match):
    _refused(match, path=None, definition=f"{defs / 'nets.py'}:{func}", card=defs / "card.json", trust_program=True)


def test_definition_needs_trust_and_an_existing_target(defs):
    _refused("--trust-model-file", path=None, definition=f"{defs / 'nets.py'}:tiny", card=defs / "card.json")
    _refused("not found", path=None, definition=f"{defs / 'gone.py'}:tiny", card=defs / "card.json",
             trust_program=True)
    _refused("cannot import 'no_such_pkg.nets'", path=None, definition="no_such_pkg.nets:tiny",
             card=defs / "card.json", trust_program=True)
    _refused("FILE.py:FUNCTION", path=None, definition="nets.py", card=defs / "card.json", trust_program=True)


@pytest.mark.parametrize("card, match", [
    ({**CARD, "input_shape": [3, 28, 28], "mean": [0.5] * 3, "std": [0.25] * 3},
     "3 input channels but the first conv takes 1"),
    ({**CARD, "num_classes": 5}, "model card says 5 but the model outputs 10"),
    ({**CARD, "class_names": ["a", "b"]}, "2 class names for a model with 10 outputs"),
    ({**CARD, "mean": [0.5, 0.5]}, "mean has 2 values for 1 input channels"),
    ({**CARD, "std": [0.0]}, "std must be positive"),
    ({**CARD, "colour": "blue"}, "unknown field 'colour'"),
    ({"mean": [0.5], "std": [0.25]}, "needs input_shape .* 1-channel image size cannot be inferred"),
    ({"input_shape": [1, 28, 28], "std": [0.25]}, "needs mean"),
    ({**CARD, "real_folder": "nowhere"}, "real_folder is not a folder"),
    ({**CARD, "input_shape": [1, 32, 32], "dataset": "mnist"}, "dataset mnist .* needs input_shape"),
])
def test_cards_that_contradict_the_model_or_lack_a_field(defs, card, match):
    (defs / "bad.json").write_text(json.dumps(card))
    _refused(match, path=None, definition=f"{defs / 'nets.py'}:tiny", card=defs / "bad.json", trust_program=True)


def test_a_card_is_found_beside_the_model_file_and_what_is_inferred_is_said(defs):
    from dsg_core.models.user import load_user
    net = load_user(None, definition=f"{defs / 'nets.py'}:tiny", card=defs / "card.json", trust_program=True).model
    torch.save(net.state_dict(), defs / "mine.pt")
    (defs / "mine.json").write_text(json.dumps({**CARD, "class_names": list("abcdefghij")}))
    user = load_user(defs / "mine.pt", definition=f"{defs / 'nets.py'}:tiny", trust_program=True)
    assert user.name == "user:mine" and user.card.class_names[1] == "b"
    assert any("mine.json" in n for n in user.notes) and "inferred 10 classes from the output" in user.notes
    spec = user.register()
    assert spec.dataset == "folder" and spec.num_classes == 10
    with pytest.raises(DataError, match="no real images: add real_folder"):
        real_split(spec.name, "train")
    unregister_model(spec.name)


def _export(model, tmp_path, name, dynamic=True):
    dyn = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic else {}
    torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, 1, 28, 28),), **dyn), str(tmp_path / name))
    return tmp_path / name


def test_bad_programs_are_refused(tmp_path, tiny_net):
    no_bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    (tmp_path / "nobn.json").write_text(json.dumps({"mean": [0.5], "std": [0.25]}))  # found beside it
    _refused("no BatchNorm layers", path=_export(no_bn, tmp_path, "nobn.pt2"), trust_program=True)
    _refused("needs a model card", path=_export(tiny_net, tmp_path, "nocard.pt2"), trust_program=True)
    _refused("fixed batch size of 2.*dynamic_shapes", path=_export(tiny_net, tmp_path, "fixed.pt2", dynamic=False),
             like="resnet20_mnist", trust_program=True)
    good = _export(tiny_net, tmp_path, "tiny.pt2")
    (tmp_path / "c.json").write_text(json.dumps({"input_shape": [1, 32, 32], "mean": [0.5], "std": [0.25]}))
    _refused(r"says input_shape \[1, 32, 32\] but the program was exported for \[1, 28, 28\]", path=good,
             card=tmp_path / "c.json", trust_program=True)
    (tmp_path / "c.json").write_text(json.dumps({"mean": [0.5], "std": [0.25], "num_classes": 3}))
    _refused("model card says 3 but the model outputs 10", path=good, card=tmp_path / "c.json", trust_program=True)
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    _refused("cannot load junk.pt2 as a torch.export program", path=tmp_path / "junk.pt2", like="resnet20_mnist",
             trust_program=True)


def test_torchscript_that_cannot_be_converted_is_refused_with_the_recipe(tmp_path, tiny_net, monkeypatch):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(tiny_net), str(tmp_path / "ts.pt"))
    import torch._export.converter as conv

    def fail(*_a, **_k):
        raise RuntimeError("unsupported TorchScript op")
    monkeypatch.setattr(conv.TS2EPConverter, "convert", fail)
    _refused("TorchScript, which cannot be hooked.*converting it to torch.export failed.*dynamic_shapes",
             path=tmp_path / "ts.pt", like="resnet20_mnist", trust_program=True)
    _refused("--trust-model-file", path=tmp_path / "ts.pt", like="resnet20_mnist")


def test_cli_errors_are_one_line(defs, capsys):
    code = main(["generate", "--model-def", f"{defs / 'nets.py'}:raises", "--card", str(defs / "card.json"),
                 "--trust-model-file", "--out", str(defs / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: raises() raised RuntimeError") and "Traceback" not in err
    code = main(["quantize", "--card", str(defs / "card.json")])
    assert code == 2 and "--card describes a --model-file or --model-def" in capsys.readouterr().err


def test_borrowed_interface_keeps_the_architectures_data_set():
    from dsg_core.models.card import ModelCard
    card = ModelCard.from_spec(get_spec("resnet18"))
    assert card.dataset == "imagenet" and card.input_shape == (3, 224, 224) and card.num_classes == 1000


def test_a_loaded_model_is_remembered_for_other_processes(defs, capsys):
    """Background jobs, torchrun ranks, History and later commands run in other processes: they find
    user:<name> by its record, and refuse it once its file changed."""
    import os
    import subprocess
    import sys

    from dsg_core.models.user import load_user
    net = load_user(None, definition=f"{defs / 'nets.py'}:tiny", card=defs / "card.json", trust_program=True).model
    torch.save(net.state_dict(), defs / "kept.pt")
    (defs / "kept.json").write_text(json.dumps({**CARD, "dataset": "mnist"}))
    code = main(["quantize", "--model-def", f"{defs / 'nets.py'}:tiny", "--model-file", str(defs / "kept.pt"),
                 "--trust-model-file", "--calib", "gaussian", "--wbits", "8", "--abits", "8", "--quantizer", "minmax",
                 "--eval-samples", "50", "--json"])
    first = json.loads(capsys.readouterr().out)
    assert code == 0 and first["model"] == "user:kept"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "dsg_core", "quantize", "--model", "user:kept", "--calib", "gaussian",
                           "--wbits", "8", "--abits", "8", "--quantizer", "minmax", "--eval-samples", "50", "--json"],
                          capture_output=True, text=True, cwd=defs, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fp32_top1"] == first["fp32_top1"]  # the same network, by name alone
    unregister_model("user:kept")
    torch.save({k: v + 1 for k, v in net.state_dict().items()}, defs / "kept.pt")
    with pytest.raises(ModelError, match="kept.pt, which is changed since"):
        get_spec("user:kept")


def test_compare_keeps_each_file_versions_sets_apart(defs, capsys):
    from dsg_core.models.user import load_user
    net = load_user(None, definition=f"{defs / 'nets.py'}:tiny", card=defs / "card.json", trust_program=True).model
    (defs / "ver.json").write_text(json.dumps({**CARD, "dataset": "mnist"}))
    argv = ["compare", "--model-def", f"{defs / 'nets.py'}:tiny", "--model-file", str(defs / "ver.pt"),
            "--trust-model-file", "--sources", "zeroq", "--bits", "8/8", "--quantizers", "minmax", "--samples", "4",
            "--iterations", "2", "--eval-samples", "30", "--cache", str(defs / "cache"), "--quiet", "--json"]
    versions = []
    for shift in (0.0, 0.5):
        torch.save({k: v + shift if v.is_floating_point() else v for k, v in net.state_dict().items()},
                   defs / "ver.pt")
        assert main(argv) == 0, capsys.readouterr().err
        capsys.readouterr()
        versions.append({p.relative_to(defs / "cache").parts[0] for p in (defs / "cache").rglob("*.safetensors")})
    assert len(versions[0]) == 1 and len(versions[1]) == 2  # the second version generated its own set
