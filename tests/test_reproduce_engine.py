"""bench/reproduce.py runs on the engine's one pipeline (dsg_core.experiments.run) and gives the rows
that composing the primitives by hand gave: the clamp-after set from the free one, the metrics against
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
    R.one_task(task, PROFILE, rows, R.Models(PROFILE, torch.device("cpu")), cache)
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


def test_reproduce_goes_through_run_with_only_the_missing_rows_and_resumes(tmp_path, monkeypatch):
    """Every row comes from one ``run(plan)`` per task: the plan asks for the task's set, the fixed
    reference and only the cells still missing; a finished task runs nothing; a clamp-after task
    after its free one generates nothing (its set is the cached free set, clamped)."""
    plans, real_run = [], R.run
    monkeypatch.setattr(R, "run", lambda plan, **kw: plans.append(plan) or real_run(plan, **kw))
    rows = Rows(tmp_path / "rows.jsonl", R.row_key)
    cache, models = SetCache(tmp_path / "sets"), R.Models(PROFILE, torch.device("cpu"))
    free = R.Task(MODEL, 0, "dsg", None, (("4/4", "minmax"), ("4/4", "dsg-avg")))
    rows.add({"kind": "main", "bits": "4/4", "quantizer": "minmax", **R.row_fields(free)[1]})  # a finished cell
    R.one_task(free, PROFILE, rows, models, cache)
    plan = plans[-1]
    assert plan.cells == [(4, 4, "dsg-avg")] and plan.diagnose and plan.reference_images == R.REFERENCE_IMAGES
    assert (plan.sources, plan.seeds, plan.generation.pixel_range) == (("dsg",), (0,), "free")
    assert [r["kind"] for r in rows.rows[1:]] == ["metrics", "main"] and rows.rows[-1]["quantizer"] == "dsg-avg"
    R.one_task(free, PROFILE, rows, models, cache)
    assert len(plans) == 1  # nothing missing: no run
    made = sorted(tmp_path.rglob("*.safetensors"))
    R.one_task(R.Task(MODEL, 0, "dsg", None, (("4/4", "minmax"),), "clamp-after"), PROFILE, rows, models, cache)
    assert len(plans) == 2 and plans[-1].generation.pixel_range == "clamp-after"
    assert sorted(tmp_path.rglob("*.safetensors")) == made  # no new set: the free one, clamped
    assert [r["kind"] for r in rows.rows[-2:]] == ["metrics", "main"]


def test_a_task_with_only_its_metrics_missing_runs_a_plan_without_cells(tmp_path, monkeypatch):
    plans, real_run = [], R.run
    monkeypatch.setattr(R, "run", lambda plan, **kw: plans.append(plan) or real_run(plan, **kw))
    rows = Rows(tmp_path / "rows.jsonl", R.row_key)
    task = R.Task(MODEL, 0, "real", None, (("4/4", "minmax"),))
    rows.add({"kind": "main", "bits": "4/4", "quantizer": "minmax", **R.row_fields(task)[1]})
    R.one_task(task, PROFILE, rows, R.Models(PROFILE, torch.device("cpu")), SetCache(tmp_path / "sets"))
    assert plans[0].cells == [] and plans[0].diagnose
    assert [r["kind"] for r in rows.rows] == ["main", "metrics"]


def test_the_sets_of_a_model_and_seed_are_made_in_one_joint_pass_before_its_tasks_run(tmp_path, monkeypatch):
    """run_tasks: the first task of a (model, seed) makes every set of its tasks in one pass
    (``generate_ahead``; a clamp-after set is its free set, so not one of them); each task's ``run``
    then reads its set from the cache."""
    from dsg_core.experiments import sets as S
    passes, real_many = [], S.generate_many
    monkeypatch.setattr(S, "generate_many", lambda model, shape, cfgs, **kw: passes.append(
        [(c.method, c.pixel_range) for c in cfgs]) or real_many(model, shape, cfgs, **kw))
    cell = (("4/4", "minmax"),)
    tasks = [R.Task(MODEL, 0, "dsg", None, cell), R.Task(MODEL, 0, "dsg", None, cell, "clamp-after"),
             R.Task(MODEL, 0, "zeroq", None, cell, "clip"), R.Task(MODEL, 0, "real", None, cell)]
    rows = Rows(tmp_path / "rows.jsonl", R.row_key)
    assert R.run_tasks(tasks, PROFILE, rows, SetCache(tmp_path / "sets"), torch.device("cpu")) == 0
    assert len(passes) == 1 and sorted(passes[0]) == [("dsg", "free"), ("zeroq", "clip")]
    assert sorted((r["kind"], r["source"], r["pixel_range"]) for r in rows.rows) == sorted(
        (kind, t.source, t.pixel_range) for t in tasks for kind in ("main", "metrics"))
