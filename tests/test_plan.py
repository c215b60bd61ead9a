"""One experiment plan: its validation, its one translation to and from JSON and `compare`
arguments, and run() — progress, cancellation, the history — as every caller uses it."""

import json

import pytest

from dsg_core.cli import build_parser, main, plan_argv, plan_from_args
from dsg_core.errors import Cancelled, ConfigError
from dsg_core.experiments import Plan, SetCache, run, task_names
from dsg_core.generation import GenerationConfig
from dsg_core.runstore import RunStore

TINY = GenerationConfig(samples=8, iterations=3)


def tiny_plan(**kw) -> Plan:
    return Plan("resnet20_mnist", **{"generation": TINY, "eval_images": 60, "bits": ((4, 4), (3, 3)), **kw})


def test_plan_round_trips_through_json_and_compare_arguments():
    plan = tiny_plan(sources=("zeroq", "dsg", "real"), seeds=(3, 5), quantizers=("minmax", "dsg-avg"),
                     priors=True, jitter=(0.9, 1.1), diagnose=False, title="a title",
                     generation=TINY.replace(epsilon=0.7, lse=False, pixel_range="clip", lr=0.25))
    assert Plan.from_json(plan.to_json()) == plan
    args = build_parser().parse_args(plan_argv(plan))
    assert plan_from_args(args) == plan


@pytest.mark.parametrize("bad, message", [
    (dict(sources=("dsg", "magic")), "magic"), (dict(seeds=(1, 1)), "distinct"), (dict(bits=((9, 4),)), "wbits"),
    (dict(quantizers=("nope",)), "quantizer"), (dict(eval_images=0), "eval_images"), (dict(seeds=()), "at least"),
    (dict(jitter=(0.0,)), "range-jitter"), (dict(generation=TINY.replace(epsilon=2.0)), "epsilon")])
def test_a_bad_plan_is_refused_before_any_work(bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny_plan(**bad).validate()
    with pytest.raises(ConfigError):
        Plan.from_dict({"model": "resnet20_mnist", "colour": "blue"})


def test_run_reports_every_task_in_order_and_saves_a_record_the_history_reads(tmp_path):
    plan = tiny_plan(sources=("dsg", "zeroq", "real"), seeds=(0,), jitter=(0.9, 1.0))
    events = []
    store = RunStore(tmp_path)
    result = run(plan, progress=lambda p: events.append(p), store=store)
    names = task_names(plan)
    done = {p.extra["task"] for p in events if p.step == p.total}
    assert done == set(range(len(names)))  # every task reported its end, the save included
    assert {p.stage for p in events} == set(names)
    assert len(result.results) == 3 * 2 and {"jitter_mean", "jitter_spread"} <= set(result.results)
    assert set(result.metrics.source) == {"dsg", "zeroq", "real"}
    stored = store.get(result.run_id)
    assert Plan.from_dict(stored.config["plan"]) == plan
    assert stored.load_run_set("dsg", 0).images.shape == (8, 1, 28, 28)
    assert {(r["source"], r["seed"]) for r in stored.metric_rows()} == {("dsg", 0), ("zeroq", 0), ("real", 0)}


def test_a_cancelled_run_saves_nothing(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(Cancelled):
        run(tiny_plan(sources=("dsg",)), cancel=lambda: True, store=store)
    assert store.list() == []


def test_cached_sets_are_the_sets_a_run_would_generate(tmp_path):
    plan = tiny_plan(sources=("zeroq",), diagnose=False)
    first = run(plan, cache=SetCache(tmp_path))
    again = run(plan, cache=SetCache(tmp_path))
    assert first.sets[("zeroq", 0)].images.equal(again.sets[("zeroq", 0)].images)
    assert first.results.top1.tolist() == again.results.top1.tolist()


def test_compare_save_writes_the_history_and_runs_lists_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["compare", "--sources", "gaussian,real", "--bits", "4/4", "--samples", "8", "--eval-samples", "50",
                 "--seeds", "0", "--cache", str(tmp_path / "cache"), "--save", str(runs), "--title", "from the CLI",
                 "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["run_id"] == 1
    code = main(["runs", "--runs-dir", str(runs), "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and [(r["id"], r["title"], r["model"]) for r in listed] == [(1, "from the CLI", "resnet20_mnist")]
    assert listed[0]["settings"]["sources"] == ["gaussian", "real"]


def test_compare_runs_a_plan_file(tmp_path, capsys):
    plan = tiny_plan(sources=("gaussian",), bits=((8, 8),), diagnose=False)
    path = tmp_path / "plan.json"
    path.write_text(plan.to_json())
    code = main(["compare", "--plan", str(path), "--cache", str(tmp_path), "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and Plan.from_dict(out["plan"]) == plan and len(out["rows"]) == 1
    path.write_text("{not json")
    assert main(["compare", "--plan", str(path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err


def test_new_plan_fields_serialize_and_an_old_plan_keeps_its_json_and_hash():
    from dsg_core import provenance
    from dsg_core.experiments.plan import NEW_FIELDS
    plan = tiny_plan(sources=("zeroq", "real"), jitter=(0.9, 1.1))
    old = plan.to_dict()
    assert not set(NEW_FIELDS) & set(old)  # a plan at their defaults writes what it wrote before them
    assert Plan.from_dict(old) == plan and Plan.from_dict(old).to_dict() == old
    assert provenance.stamp(Plan.from_json(json.dumps(old)).to_dict()) == provenance.stamp(old)
    new = plan.replace(only_cells=((3, 3, "minmax"), (8, 8, "dsg-avg")), reference_images=512, diagnose_ranges=True)
    d = json.loads(new.to_json())
    assert d["only_cells"] == [[3, 3, "minmax"], [8, 8, "dsg-avg"]] and d["reference_images"] == 512
    assert Plan.from_json(new.to_json()) == new and new.cells == [(3, 3, "minmax"), (8, 8, "dsg-avg")]
    assert provenance.stamp(new.to_dict()) != provenance.stamp(old)
    assert plan.replace(only_cells=()).validate().cells == []  # a diagnosis alone


@pytest.mark.parametrize("bad, message", [
    (dict(only_cells=((4, 4, "minmax"), (4, 4, "minmax"))), "distinct"),
    (dict(only_cells=((9, 4, "minmax"),)), "wbits"), (dict(only_cells=((4, 4, "nope"),)), "quantizer"),
    (dict(reference_images=0), "reference_images")])
def test_bad_new_plan_fields_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny_plan(**bad).validate()


def test_run_quantizes_only_the_plans_cells_and_diagnoses_against_a_fixed_reference():
    plan = tiny_plan(sources=("gaussian", "real"), only_cells=((3, 3, "minmax"), (4, 4, "minmax")),
                     reference_images=40, diagnose_ranges=True)
    result = run(plan)
    assert list(zip(result.results.source, result.results.bits)) == [
        ("gaussian", "W3A3"), ("gaussian", "W4A4"), ("real", "W3A3"), ("real", "W4A4")]
    assert (result.results.seconds > 0).all()
    assert list(result.metrics.source) == ["gaussian", "real"]  # the real calibration set measured as a set
    assert {"out_of_range_fraction", "range_ratio"} <= set(result.metrics)
    assert len(result.diagnosis.images["Real"]) == 40  # the pool's first 40 images as the reference
