"""The CLI's JSON contract and its error handling (exit 2, one line, no traceback)."""

import json
import os
import subprocess
import sys

import pytest

from dsg_core.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0
    assert sum(r["default"] for r in rows) == 1
    for r in rows:
        assert {"name", "default", "input_shape", "num_classes", "bn_layers", "fp32_top1"} <= set(r)
        assert len(r["bn_layers"]) > 0
    default = next(r for r in rows if r["default"])
    assert default["fp32_top1"] >= 97 and default["input_shape"] == [1, 28, 28]


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "set.safetensors"
    assert main(["generate", "--method", "dsg", "--samples", "16", "--iterations", "5", "--seed", "1",
                 "--out", str(path), "--json", "--quiet"]) == 0
    return path


def test_generate_json(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "generate", "--method", "zeroq", "--samples", "8", "--iterations", "3",
                           "--out", str(tmp_path / "z.safetensors"), "--json", "--quiet")
    summary = json.loads(out)
    assert code == 0 and summary["samples"] == 8 and summary["label"] == "ZeroQ"
    assert (tmp_path / "z.safetensors").exists()


def test_diagnose_json(capsys, synthetic_file):
    code, out, _ = run_cli(capsys, "diagnose", "--samples", str(synthetic_file), "--json", "--real-samples", "128")
    metrics = json.loads(out)
    assert code == 0
    for key in ("mean_cosine_similarity", "feature_cosine_similarity", "effective_rank", "stat_spread_ratio",
                "frechet_distance", "precision", "recall", "class_entropy"):
        assert isinstance(metrics[key], float), key
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["class_entropy"] <= 1
    assert 0 <= metrics["out_of_range_fraction"] <= 1 and metrics["max_excursion"] >= 0  # the pixel-range columns


def test_quantize_json(capsys, synthetic_file):
    code, out, _ = run_cli(capsys, "quantize", "--calib", str(synthetic_file), "--wbits", "4", "--abits", "4",
                           "--quantizer", "minmax", "--json", "--eval-samples", "200")
    res = json.loads(out)
    assert code == 0
    assert {"fp32_top1", "quant_top1", "agreement", "kl"} <= set(res)
    assert 0 <= res["quant_top1"] <= 100 and 0 <= res["agreement"] <= 1 and res["kl"] >= 0
    assert res["seconds"] > 0 and "range_jitter" not in res


def test_quantize_range_jitter_json(capsys, synthetic_file):
    code, out, _ = run_cli(capsys, "quantize", "--calib", str(synthetic_file), "--wbits", "4", "--abits", "4",
                           "--quantizer", "minmax", "--json", "--eval-samples", "200", "--range-jitter", "0.9,1,1.1")
    res = json.loads(out)
    assert code == 0 and list(res["range_jitter"]) == ["0.9", "1", "1.1"]
    assert res["range_jitter"]["1"] == pytest.approx(res["quant_top1"])
    assert res["range_jitter_spread"] == pytest.approx(
        max(res["range_jitter"].values()) - min(res["range_jitter"].values()))


def test_compare_json_reuses_cached_sets(capsys, tmp_path):
    args = ["compare", "--sources", "gaussian,zeroq,real", "--bits", "8/8,4/4", "--quantizers", "minmax",
            "--seeds", "0", "--samples", "8", "--iterations", "3", "--cache", str(tmp_path), "--json",
            "--eval-samples", "100", "--quiet"]
    code, out, _ = run_cli(capsys, *args)
    rows = json.loads(out)["rows"]
    assert code == 0 and len(rows) == 3 * 2
    for r in rows:
        assert {"model", "source", "wbits", "abits", "quantizer", "seed", "top1"} <= set(r)
    cached = sorted(tmp_path.rglob("*.safetensors"))
    assert len(cached) == 2  # gaussian and zeroq; real data is not generated
    stamps = [p.stat().st_mtime_ns for p in cached]
    code, out2, _ = run_cli(capsys, *args)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # reused, not regenerated
    again = json.loads(out2)["rows"]  # the same rows, each one's time (quantize + evaluate) aside
    assert [{**r, "seconds": 0} for r in again] == [{**r, "seconds": 0} for r in rows]


@pytest.mark.parametrize("args, msg", [
    (["generate", "--epsilon", "1.5", "--out", "x.safetensors"], "epsilon"),
    (["generate", "--iterations", "0", "--out", "x.safetensors"], "iterations"),
    (["generate", "--model", "resnet20", "--out", "x.safetensors"], "unknown model"),
    (["quantize", "--wbits", "9"], "wbits"),
    (["quantize", "--range-jitter", "0.9,x"], "range-jitter"),
    (["quantize", "--range-jitter", "0,1"], "positive"),
    (["compare", "--bits", "4-4"], "W/A"),
    (["compare", "--sources", "zeroq,magic"], "magic"),
])
def test_bad_input_exits_2_with_message(capsys, args, msg):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("error:") and msg in err and "Traceback" not in err


def test_foreign_file_as_synthetic_set(capsys, tmp_path):
    bad = tmp_path / "photo.safetensors"
    bad.write_bytes(b"\x89PNG not really")
    code, _, err = run_cli(capsys, "diagnose", "--samples", str(bad))
    assert code == 2 and "not a DSG synthetic set" in err


def test_set_for_another_input_shape_is_refused(capsys, tmp_path):
    import torch

    from dsg_core.generation import SyntheticSet
    path = SyntheticSet(torch.zeros(4, 3, 32, 32), "other", {}).save(tmp_path / "rgb.safetensors")
    code, _, err = run_cli(capsys, "quantize", "--calib", str(path))
    assert code == 2 and "shape" in err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "dsg_core", "models", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)


def test_module_entry_point_keeps_output_and_exit_code_without_teardown(tmp_path):
    """``python -m dsg_core`` ends with os._exit: files, stdout and the error code must all survive."""
    cmd = [sys.executable, "-m", "dsg_core", "generate", "--samples", "4", "--iterations", "2", "--quiet"]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "a.safetensors"), "--json"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["samples"] == 4
    assert (tmp_path / "a.safetensors").stat().st_size > 4 * 28 * 28 * 4
    bad = subprocess.run([*cmd, "--out", str(tmp_path / "b.safetensors"), "--model", "resnet20_mnist", "--lr", "nan"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and not (tmp_path / "b.safetensors").exists()



@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_output_lost_to_a_full_disk_is_not_reported_as_success():
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "dsg_core", "models", "--json"], stdout=full, timeout=120)
    assert res.returncode != 0


def test_generate_with_auto_batch_and_bf16(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "generate", "--samples", "8", "--iterations", "2", "--batch-size", "auto",
                           "--precision", "bf16", "--out", str(tmp_path / "a.safetensors"), "--json", "--quiet")
    assert code == 0
    summary = json.loads(out)
    assert summary["config"]["batch_size"] == 8 and summary["samples"] == 8


def test_bad_batch_size_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--batch-size", "many", "--out", str(tmp_path / "a.safetensors")])
    assert exc.value.code == 2 and "number or 'auto'" in capsys.readouterr().err


def test_zero_reconstruction_steps_is_an_error_not_the_default(capsys):
    code, _, err = run_cli(capsys, "quantize", "--quantizer", "adaround", "--recon-iters", "0")
    assert code == 2 and "recon_iters must be a positive integer" in err
