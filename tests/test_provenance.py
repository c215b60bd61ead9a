"""Provenance: every set, run record and result row says which code and settings made it, and the
renderers refuse rows of several code versions unless told to."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dsg_core import provenance as P
from dsg_core.errors import DataError
from dsg_core.experiments import Plan, run
from dsg_core.generation import GenerationConfig, SyntheticSet
from dsg_core.runstore import RunStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import evidence as E  # noqa: E402 - bench/ is not a package: its path goes first
import reproduce as R  # noqa: E402 - as above


def test_tree_hash_follows_contents_and_names_not_discovery_order(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = P.tree_hash(tmp_path)
    assert len(first) == P.DIGITS and first == P.tree_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("changed, but not a .py file")
    assert P.tree_hash(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    edited = P.tree_hash(tmp_path)
    assert edited != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    assert P.tree_hash(tmp_path) != edited


def test_source_hash_is_this_packages_tree_and_computed_once():
    assert P.source_hash() == P.tree_hash(P.PACKAGE)
    assert P.source_hash.cache_info().currsize == 1


def test_config_hash_is_canonical():
    assert P.config_hash({"a": 1, "b": [1, 2]}) == P.config_hash({"b": (1, 2), "a": 1})
    assert P.config_hash({"a": 1}) != P.config_hash({"a": 2})
    assert P.config_hash(None) == P.config_hash({})


def test_code_version_is_the_checkout_commit_here():
    version = P.code_version()
    commit = P._git("rev-parse", "HEAD")
    assert commit, "the tests run in a git checkout"
    assert version.removesuffix("+dirty") == commit[:P.DIGITS]


def test_code_version_without_git_is_the_package_version(monkeypatch):
    monkeypatch.setattr(P, "_git", lambda *a: None)
    P.code_version.cache_clear()
    try:
        from dsg_core import __version__
        assert P.code_version() == f"dsg_core-{__version__}"
    finally:
        P.code_version.cache_clear()


def test_a_saved_set_records_its_provenance_and_an_old_file_still_loads_as_unknown(tmp_path):
    cfg = GenerationConfig(samples=4).to_dict()
    s = SyntheticSet(images=torch.randn(4, 1, 28, 28), model="resnet20_mnist", config=cfg)
    back = SyntheticSet.load(s.save(tmp_path / "new.safetensors"))
    assert back.provenance == P.stamp(cfg) and back.provenance["config_hash"] == P.config_hash(cfg)
    # an older file: no provenance in its metadata
    from safetensors.torch import save
    meta = {k: v for k, v in s.metadata().items() if k != "provenance"}
    (tmp_path / "old.safetensors").write_bytes(save(s.tensors(), metadata=meta))
    old = SyntheticSet.load(tmp_path / "old.safetensors")
    assert old.provenance == {} and old.label == "DSG (SDA+LSE+SCI)"
    resaved = SyntheticSet.load(old.save(tmp_path / "resaved.safetensors"))
    assert resaved.provenance == {}  # re-saving an old set does not claim today's code made it


def test_run_result_rows_and_the_run_record_carry_the_stamp(tmp_path):
    plan = Plan("resnet20_mnist", sources=("gaussian",), bits=((8, 8),), eval_images=40, diagnose=False,
                generation=GenerationConfig(samples=8, batch_size=8, iterations=1))
    result = run(plan, store=RunStore(tmp_path))
    assert result.provenance == P.stamp(plan.to_dict())
    assert set(result.results.source_hash) == {P.source_hash()}
    assert set(result.results.config_hash) == {P.config_hash(plan.to_dict())}
    stored = RunStore(tmp_path).get(result.run_id)
    assert stored.config["provenance"] == result.provenance
    assert all(r["code_version"] == P.code_version() for r in stored.results)


def test_save_run_keeps_a_rows_own_stamp(tmp_path):
    old = {"source": "dsg", "seed": 0, "top1": 1.0, "source_hash": "0ld0ld0ld0ld"}
    run_id, _ = RunStore(tmp_path).save_run(model="m", title="t", config={"plan": {"model": "m"}}, metric_rows=[],
                                            result_rows=[old, {"source": "zeroq", "seed": 0, "top1": 2.0}], sets={})
    rows = RunStore(tmp_path).get(run_id).results
    assert [r["source_hash"] for r in rows] == ["0ld0ld0ld0ld", P.source_hash()]


def rows_of(*hashes):
    return [{"kind": "main", "model": "m", "source": "dsg", "seed": k, "bits": "4/4", "quantizer": "minmax",
             "epsilon": None, "top1": 50.0, "fp32_top1": 99.0, "code_version": f"c{h}", "source_hash": h}
            if h else {"kind": "main", "model": "m", "source": "dsg", "seed": k, "bits": "4/4", "quantizer": "minmax",
                       "epsilon": None, "top1": 50.0, "fp32_top1": 99.0}
            for k, h in enumerate(hashes)]


def test_versions_count_old_rows_as_unknown_and_nan_too():
    rows = rows_of("aaa", None, "aaa") + [{"source_hash": float("nan")}]
    assert P.versions(rows) == {"aaa": ["caaa"], P.UNKNOWN: [P.UNKNOWN]}
    assert P.check_versions(rows_of("aaa", "aaa")) == []


def test_check_versions_refuses_mixed_rows_unless_allowed():
    with pytest.raises(DataError, match="2 code versions.*--allow-mixed"):
        P.check_versions(rows_of("aaa", "bbb"))
    lines = P.check_versions(rows_of("aaa", "bbb", None), allow_mixed=True)
    text = "\n".join(lines)
    assert "Mixed code versions" in text and "`aaa`" in text and "`bbb`" in text and "`unknown`" in text


def test_reproduce_render_refuses_mixed_versions_and_says_so_when_allowed():
    profile = {**R.PROFILES["quick"], "bits": ["4/4"], "quantizers": ["minmax"], "sources": ["dsg"]}
    same = R.render(rows_of("aaa", "aaa"), "quick", profile)
    assert "Mixed code versions" not in same and "| dsg | 2 |" in same
    with pytest.raises(DataError, match="code versions"):
        R.render(rows_of("aaa", None), "quick", profile)
    mixed = R.render(rows_of("aaa", None), "quick", profile, allow_mixed=True)
    assert "Mixed code versions" in mixed and "`unknown`" in mixed and "`aaa`" in mixed


def test_reproduce_rows_are_stamped_where_they_are_written(tmp_path, monkeypatch):
    """One task of bench/reproduce.py with the engine's run faked (a real task takes minutes): both its
    metrics row and its result row carry the stamp of the profile and the task's key, not the plan's."""
    import pandas as pd

    class FakeModels:  # Resources are not loaded: the faked run does not use them
        device = torch.device("cpu")

        def of(self, model):
            return None

    metrics = pd.DataFrame({"set": ["DSG"], "source": ["dsg"], "seed": [0], "recall": [0.5]})
    results = pd.DataFrame([{"wbits": 4, "abits": 4, "quantizer": "minmax", "top1": 90.0, "fp32_top1": 99.0,
                             "agreement": 0.9, "kl": 0.1, "seconds": 1.0, **P.stamp({"another": "plan"})}])
    monkeypatch.setattr(R, "run", lambda *a, **k: SimpleNamespace(metrics=metrics, results=results))
    profile = {**R.PROFILES["quick"], "recon_iters": 1}
    rows = R.Rows(tmp_path / "rows.jsonl", R.row_key)
    task = R.Task("resnet20_mnist", 0, "dsg", None, (("4/4", "minmax"),))
    R.one_task(task, profile, rows, FakeModels(), None)
    _, key = R.row_fields(task)
    written = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in written] == ["metrics", "main"]
    for r in written:
        assert {k: r[k] for k in P.FIELDS} == P.stamp({**profile, **key})


def test_evidence_reads_rows_with_their_versions_and_refuses_mixed(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({**r, "pixel_range": "free"}) for r in rows_of("aaa", "bbb")) + "\n")
    with pytest.raises(DataError, match="code versions"):
        E.read_rows(path)
    cells, _, versions = E.read_rows(path, allow_mixed=True)
    assert len(cells) == 2 and versions == {"aaa": ["caaa"], "bbb": ["cbbb"]}


def test_evidence_reads_only_the_pages_sources_from_the_shared_cache(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{**r, "pixel_range": "free", "source": src} for r, src in zip(rows_of("aaa", "aaa"), ("dsg", "sda"))]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cells, _, _ = E.read_rows(path)
    assert [c["source"] for c in cells] == ["dsg"]  # the ablation sets of control-sources stay off the first page


def test_the_small_multiples_take_the_components_from_every_seed_of_the_control(tmp_path):
    path = tmp_path / "rows.jsonl"
    main = [{"kind": "main", "model": "m", "source": src, "pixel_range": pr, "seed": seed, "bits": bits,
             "quantizer": "minmax", "top1": 90.0 + seed, "jitter_mean": 80.0}
            for src in ("sci", "zeroq") for pr in ("free", "clamp-after") for seed in range(10)
            for bits in ("3/3", "4/4")]
    metrics = [{"kind": "metrics", "model": "m", "source": "sci", "pixel_range": "free", "seed": 4,
                "stat_spread_ratio": 0.25}]
    path.write_text("\n".join(json.dumps(r) for r in main + metrics) + "\n")
    rows = E.component_rows(path, "m", {"free"})
    assert len(rows) == 10 and {r["variant"] for r in rows} == {"SCI"} and {r["bits"] for r in rows} == {"W3A3"}
    assert [r["stat_spread_ratio"] for r in rows if r["seed"] == 4] == [0.25] and rows[0]["top1"] == 90.0
    assert E.component_rows(path, "other", {"free"}) == []
    recon = {**main[0], "bits": "2/4", "quantizer": "adaround"}  # W2A4 AdaRound: SDA's cost (COMPONENT_CELLS)
    path.write_text("\n".join(json.dumps(r) for r in main + metrics + [recon, {**recon, "bits": "3/3"}]) + "\n")
    assert {(r["bits"], r["quantizer"]) for r in E.component_rows(path, "m", {"free"})} == {
        ("W3A3", "minmax"), ("W2A4", "adaround")}


def test_the_stamp_names_the_machine_because_low_bit_cells_differ_between_cpus(monkeypatch):
    """Same code, seed and set gave W2A4 cells 10 points apart in runs from different sessions, which
    repeat exactly on one machine (docs/results.md), so a row says which CPU and torch build computed it."""
    import platform

    import torch
    m = P.stamp({})["machine"]
    assert m == P.machine() and f"torch {torch.__version__}" in m and platform.machine() in m
    assert P.cpu_name() in m and P.cpu_name()
    monkeypatch.setattr(P, "Path", lambda *_: (_ for _ in ()).throw(OSError("no /proc")))
    assert P.cpu_name() == (platform.processor() or platform.machine())  # not Linux: what platform knows
