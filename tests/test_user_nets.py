"""Architectures the registry does not have (tests/user_nets.py), trained briefly on the embedded MNIST
split, through the torch.export, Python-definition and TorchScript paths: generate (every method) ->
diagnose -> quantize via the CLI, each on the model by its registered name."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from user_nets import dw_net, vgg_bn

from dsg_core.cli import main
from dsg_core.data import real_split
from dsg_core.models import get_spec, list_models, load_model, unregister_model
from dsg_core.models.user import load_user

MNIST = {"mean": [0.1307], "std": [0.3081]}
NETS = {"vgg_bn": (vgg_bn, 1), "dw_net": (dw_net, 3)}  # builder, epochs (~3 s and ~12 s on one idle core)


def train(build, epochs: int) -> torch.nn.Module:
    """Adam on the 4000 embedded training digits; one thread (two fight each other on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(build, epochs)
    finally:
        torch.set_num_threads(threads)


def _train(build, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net, (x, y) = build(), real_split("resnet20_mnist", "train")
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="session")
def trained():
    return {name: train(build, epochs) for name, (build, epochs) in NETS.items()}


def digit_folder(root: Path, split: str, per_class: int = 6) -> Path:
    """Embedded MNIST digits as PNGs in ImageFolder layout (<class>/<image>.png)."""
    x, y = real_split("resnet20_mnist", split)
    pixels = (x * MNIST["std"][0] + MNIST["mean"][0]).clamp(0, 1).mul(255).round().byte()
    for c in range(10):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for k, i in enumerate((y == c).nonzero().flatten()[:per_class].tolist()):
            Image.fromarray(pixels[i, 0].numpy()).save(root / str(c) / f"{k}.png")
    return root


@pytest.fixture(scope="session")
def files(trained, tmp_path_factory):
    """Per net: an exported program (with a card beside it), a state dict and a card for the definition."""
    root = tmp_path_factory.mktemp("user_nets")
    out = {}
    for name, net in trained.items():
        ep = torch.export.export(net, (torch.zeros(2, 1, 28, 28),), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(ep, str(root / f"{name}_prog.pt2"))
        save_file(net.state_dict(), str(root / f"{name}_def.safetensors"))
        (root / f"{name}_def.json").write_text(json.dumps(
            {"input_shape": [1, 28, 28], **MNIST, "num_classes": 10, "dataset": "mnist",
             "class_names": [f"digit {i}" for i in range(10)]}))
        out[name] = root
    # one program gets its real and test data from folders named in its card, the other the embedded digits
    digit_folder(root / "real", "train"), digit_folder(root / "test", "test")
    (root / "vgg_bn_prog.json").write_text(json.dumps({**MNIST, "dataset": "mnist"}))
    (root / "dw_net_prog.json").write_text(json.dumps({**MNIST, "real_folder": "real", "test_folder": "test"}))
    return root


def run(capsys, *argv):
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def model_args(files: Path, net: str, path: str) -> list[str]:
    if path == "pt2":
        return ["--model-file", str(files / f"{net}_prog.pt2"), "--trust-model-file"]
    return ["--model-def", f"user_nets:{net}", "--model-file", str(files / f"{net}_def.safetensors"),
            "--trust-model-file"]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("path", ["pt2", "def"])
def test_generate_diagnose_quantize_through_the_cli(files, trained, net, path, capsys, tmp_path):
    args = model_args(files, net, path)
    name = f"user:{net}_{'prog' if path == 'pt2' else 'def'}"
    losses = {}
    for method in ("gaussian", "zeroq", "dsg"):
        out, err = run(capsys, "generate", *args, "--method", method, "--samples", "8", "--iterations", "4",
                       "--out", str(tmp_path / f"{method}.safetensors"))
        assert out["model"] == name and out["samples"] == 8
        losses[method] = out["final_loss"]
    assert "BatchNorm layers" in err and "checked: input (1, 28, 28), 10 classes" in err
    if path == "pt2":
        assert "inferred input shape (1, 28, 28) from the exported program" in err
        assert "inferred 10 classes from the output" in err
    assert losses["gaussian"] is None and losses["zeroq"] > 0 and losses["dsg"] >= 0
    diag, _ = run(capsys, "diagnose", *args, "--samples", str(tmp_path / "dsg.safetensors"), "--real-samples", "64")
    assert 0 < diag["effective_rank"] and 0 <= diag["class_coverage"] <= 1
    fp32 = None
    for quantizer, extra in (("minmax", []), ("dsg-avg", []), ("adaround", ["--recon-iters", "3"])):
        res, _ = run(capsys, "quantize", *args, "--calib", str(tmp_path / "dsg.safetensors"), "--wbits", "8",
                     "--abits", "8", "--quantizer", quantizer, "--eval-samples", "60", *extra)
        fp32 = res["fp32_top1"]
        assert res["model"] == name and res["quant_top1"] >= fp32 - 5, (quantizer, res)
    assert fp32 > (85 if net == "vgg_bn" else 60)  # trained, and evaluated on its own test data
    assert get_spec(name).input_shape == (1, 28, 28)  # registered by name in this process
    unregister_model(name)
    assert name not in [s.name for s in list_models()]


def test_program_and_definition_compute_the_same_generation(files):
    """The exported program, modularized, is the network its definition builds: same BN losses."""
    a = load_user(files / "vgg_bn_prog.pt2", trust_program=True).register()
    b = load_user(files / "vgg_bn_def.safetensors", definition="user_nets:vgg_bn", trust_program=True).register()
    from dsg_core.generation import generate_named, preset
    cfg = preset("paper", image_size=28, method="dsg", samples=4, batch_size=4, iterations=3)
    ha, hb = (generate_named(n.name, cfg).history for n in (a, b))
    assert [h["loss"] for h in ha] == pytest.approx([h["loss"] for h in hb], rel=1e-4)
    assert b.class_names[3] == "digit 3" and a.class_names[3] == "3"
    for spec in (a, b):
        unregister_model(spec.name)


def test_card_folders_are_the_models_real_and_test_data(files):
    spec = load_user(files / "dw_net_prog.pt2", trust_program=True).register()
    x, y = real_split(spec.name, "test")
    assert x.shape == (60, 1, 28, 28) and sorted(set(y.tolist())) == list(range(10))
    assert spec.dataset == "folder" and Path(spec.real_folder) == files / "real"
    unregister_model(spec.name)


def test_torchscript_is_converted_and_hookable(trained, tmp_path, capsys):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(trained["dw_net"]), str(tmp_path / "dw.pt"))
    (tmp_path / "dw.json").write_text(json.dumps({"input_shape": [1, 28, 28], **MNIST, "dataset": "mnist"}))
    out, err = run(capsys, "generate", "--model-file", str(tmp_path / "dw.pt"), "--trust-model-file",
                   "--method", "dsg", "--samples", "4", "--iterations", "2", "--out", str(tmp_path / "s.safetensors"))
    assert out["model"] == "user:dw" and "5 BatchNorm layers" in err
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(load_model("user:dw")(x), trained["dw_net"](x), atol=1e-5)


@pytest.mark.parametrize("quantizer, extra", [("percentile", []), ("mse", []), ("brecq", ["--recon-iters", "2"]),
                                              ("minmax", ["--fold-bn"])])
def test_other_quantizers_and_bn_folding_on_a_program(files, quantizer, extra, capsys):
    """The rest of the quantizers, and BN folding (the folded program must compute the same function)."""
    res, _ = run(capsys, "quantize", *model_args(files, "vgg_bn", "pt2"), "--calib", "real", "--samples", "32",
                 "--wbits", "8", "--abits", "8", "--quantizer", quantizer, "--eval-samples", "60", *extra)
    assert res["quant_top1"] >= res["fp32_top1"] - 5 and res["agreement"] > 0.9, res
