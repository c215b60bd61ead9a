"""bench/reproduce.py runs on the engine's functions (dsg_core.experiments) and gives the rows that
composing the primitives by hand gave: the clamp-after set from the free one, the metrics against
512 real images, the range jitter with factor 1 as the calibrated result."""

import sys
from pathlib import Path

import pytest
import torch

from dsg_core.provenance import FIELDS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import reproduce as R  # noqa: E402 - bench/ is not a package: its path goes first
from common import Rows  # noqa: E402 - the same

from dsg_core.data import real_split
from dsg_core.diagnostics import activation_ranges, clamp_to_range, diagnose, range_ratios
from dsg_core.experiments import (
    SetCache,
    calibration_set,
    generated_sets,
    quantize_and_evaluate,
    real_calibration,
)
from dsg_core.experiments import TestSet as Evaluation  # a name pytest does not collect as a test class
from dsg_core.generation import GenerationConfig
from dsg_core.models import get_spec, load_model
from dsg_core.quant import QuantConfig

MODEL = "resnet20_mnist"
PROFILE = {**R.PROFILES["tiny"], "samples": 8, "iterations": 4, "eval_images": 100}


def test_a_clamp_after_set_is_its_free_set_clamped_and_costs_no_generation(tmp_path):
    model, spec = load_model(MODEL), get_spec(MODEL)
    base = GenerationConfig(samples=4, batch_size=4, iterations=3, seed=1)
    cfgs = {"free": base, "clamped": base.replace(pixel_range="clamp-after")}
    sets = generated_sets(model, spec, cfgs, cache=SetCache(tmp_path))
    assert torch.equal(sets["clamped"].images, clamp_to_range(sets["free"].images, spec.valid_range))
    assert not torch.equal(sets["clamped"].images, sets["free"].images)  # free pixels did leave the range
    assert sets["clamped"].config["pixel_range"] == "clamp-after"
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1  # one set made and cached: the free one
    again = generated_sets(model, spec, {"clamped": cfgs["clamped"]}, cache=SetCache(tmp_path))
    assert torch.equal(again["clamped"].images, sets["clamped"].images)


@pytest.mark.parametrize("source", ["zeroq", "real"])
def test_reproduce_rows_equal_the_primitives_composed_by_hand(tmp_path, source):
    pixel_range = "clamp-after" if source != "real" else "free"
    task = R.Task(MODEL, 0, source, None, (("4/4", "minmax"),), pixel_range)
    rows = Rows(tmp_path / "rows.jsonl", R.row_key)
    cache = SetCache(tmp_path / "sets")
    R.one_task(task, PROFILE, rows, R.TaskSets([task], PROFILE, cache, torch.device("cpu")), torch.device("cpu"))
    got = {r["kind"]: r for r in rows.rows}

    # the pipeline before it ran on the engine's functions (bench/reproduce.py at 30cdc07)
    model, spec = load_model(MODEL), get_spec(MODEL)
    base = GenerationConfig(samples=8, batch_size=8, iterations=4, seed=0)
    images, _ = calibration_set(model, spec, source, base, cache=cache)
    images = clamp_to_range(images, spec.valid_range) if pixel_range == "clamp-after" else images
    real = real_split(MODEL, "train")[0][:512]
    m = diagnose(model, {"set": images}, real, spec.input_shape, valid_range=spec.valid_range).metrics().loc["set"]
    m = {**m.to_dict(), **range_ratios(activation_ranges(model, images),
                                       activation_ranges(model, real_calibration(MODEL, 8, 0)))}
    test = Evaluation.of(model, *(t[:100] for t in real_split(MODEL, "test")))
    res = quantize_and_evaluate(model, images, QuantConfig(wbits=4, abits=4, quantizer="minmax", recon_iters=10),
                                test, jitter=(0.8, 1.2))
    accs = {"0.8": res["range_jitter"]["0.8"], "1": res["quant_top1"], "1.2": res["range_jitter"]["1.2"]}

    metrics = {k: v for k, v in got["metrics"].items() if k not in R.row_fields(task)[1]}
    stamp = list(FIELDS)  # provenance (code version, source hash, config hash) closes every row
    assert list(metrics) == ["kind", "bits", "quantizer", *m, *stamp]  # the row format: keys and their order
    assert {k: metrics[k] for k in m} == pytest.approx(m, rel=1e-6, abs=1e-9)
    main = got["main"]
    assert (main["top1"], main["fp32_top1"], main["agreement"], main["kl"]) == (res["quant_top1"], res["fp32_top1"],
                                                                               res["agreement"], res["kl"])
    assert main["range_jitter"] == accs and main["jitter_mean"] == sum(accs.values()) / 3
    assert list(main) == ["kind", "bits", "quantizer", "model", "source", "seed", "epsilon", "pixel_range", "top1",
                          "fp32_top1", "agreement", "kl", "range_jitter", "jitter_mean", "seconds", "device", *stamp]
