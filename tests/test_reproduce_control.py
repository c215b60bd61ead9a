"""The pixel-range control profile of bench/reproduce.py: task order, rows, and its statistics."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import reproduce as R  # noqa: E402 - bench/ is not a package: its path goes first

REPO = Path(__file__).resolve().parent.parent


class NoRows:
    rows: list = []


def test_control_runs_every_model_on_a_wave_of_seeds_before_the_next_wave():
    tasks = R.plan({**R.PROFILES["control"], "seeds": 10}, NoRows())
    order = [(t.model, t.seed) for t in tasks]
    firsts = list(dict.fromkeys(order))
    assert firsts[:5] == [("resnet20_mnist", s) for s in range(5)]
    assert firsts[5:10] == [("mobilenetv2_mnist", s) for s in range(5)]
    assert firsts[10] == ("resnet20_mnist", 5) and len(firsts) == 20


def test_within_a_seed_the_focus_comparison_comes_first_then_clip_then_the_references():
    profile = {**R.PROFILES["control"], "sources": ["zeroq", "dsg", "real", "gaussian"], "focus": ["zeroq", "dsg"]}
    tasks = [t for t in R.plan(profile, NoRows()) if t.model == "resnet20_mnist" and t.seed == 0]
    assert [(t.source, t.pixel_range) for t in tasks] == [
        ("zeroq", "free"), ("zeroq", "clamp-after"), ("dsg", "free"), ("dsg", "clamp-after"),
        ("zeroq", "clip"), ("dsg", "clip"), ("real", "free"), ("gaussian", "free"), ("gaussian", "clamp-after")]


def test_control_pixel_ranges_per_source():
    tasks = [t for t in R.plan(R.PROFILES["control"], NoRows()) if t.model == "resnet20_mnist" and t.seed == 0]
    got = {(t.source, t.pixel_range) for t in tasks}
    assert got == {("gaussian", "free"), ("gaussian", "clamp-after"), ("real", "free"),
                   *((s, p) for s in ("zeroq", "dsg") for p in ("free", "clamp-after", "clip"))}
    assert all(t.combos == (("3/3", "minmax"), ("3/3", "dsg-avg"), ("4/4", "dsg-avg"), ("4/4", "minmax"),
                            ("3/3", "adaround"), ("2/4", "adaround")) for t in tasks)  # + what reconstruction changes


def test_row_key_reads_older_rows_as_free():
    old = dict(kind="main", model="m", source="dsg", bits="4/4", quantizer="minmax", seed=0, epsilon=None)
    assert R.row_key(old) == R.row_key({**old, "pixel_range": "free"})
    assert R.row_key(old) != R.row_key({**old, "pixel_range": "clip"})


def test_partial_spearman_removes_a_shared_cause():
    rng = np.random.default_rng(0)
    z = pd.Series(rng.normal(size=200))
    x, y = z + 0.1 * rng.normal(size=200), z + 0.1 * rng.normal(size=200)  # related only through z
    assert R.spearman(pd.Series(x), pd.Series(y)) > 0.9
    assert abs(R.spearman(pd.Series(x), pd.Series(y), z)) < 0.2
    assert np.isnan(R.spearman(pd.Series(x[:7]), pd.Series(y[:7])))  # never from fewer than 8 points


def test_paired_gap_is_per_seed():
    dc = pd.DataFrame({"source": ["dsg", "zeroq"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                       "top1": [90, 80, 50, 60, 70, 70.0], "jitter_mean": [1, 0, 1, 0, 1, 0.0]})
    gap = R.paired_gap(dc)
    assert gap["top1"].startswith("+0.0 ± 8.2 (n=3)") and gap["top1_ahead"] == "1 of 3"
    assert gap["jitter_mean_ahead"] == "3 of 3"


def test_control_rows_keep_only_the_dashboards_fields():
    rows = [dict(kind="main", model="m", source="dsg", bits="4/4", quantizer="minmax", seed=0, epsilon=None,
                 pixel_range="clip", top1=98.123456, jitter_mean=90.0, kl=0.1, range_jitter={"1": 98.1}),
            dict(kind="metrics", model="m", source="dsg", bits=None, quantizer=None, seed=0, epsilon=None,
                 pixel_range="clip", out_of_range_fraction=0.0, effective_rank=12.3456789, precision=float("nan"))]
    import json
    main, met = (json.loads(line) for line in R.control_rows(rows).splitlines())
    assert main == dict(kind="main", model="m", source="dsg", pixel_range="clip", seed=0, bits="4/4",
                        quantizer="minmax", top1=98.12, jitter_mean=90.0)
    assert met["effective_rank"] == pytest.approx(12.35) and met["precision"] is None and "top1" not in met


def test_control_sources_share_the_controls_cache_and_skip_its_done_cells():
    cs, control = R.PROFILES["control-sources"], R.PROFILES["control"]
    assert cs["cache"] == "control" and set(control["sources"]) < set(cs["sources"])
    assert "sda+lse+sci" not in cs["sources"]  # it is `dsg` (sources.py): no second copy of the same sets
    tasks = [t for t in R.plan(cs, NoRows()) if t.model == "resnet20_mnist" and t.seed == 0]
    assert {t.combos for t in tasks} == {tuple(tuple(c) for c in cs["cells"])}  # no reconstruction: control's


def test_paired_gap_of_any_source_against_zeroq():
    dc = pd.DataFrame({"source": ["sda", "zeroq", "dsg"] * 2, "seed": [0, 0, 0, 1, 1, 1],
                       "top1": [90, 80, 10, 70, 60, 10.0], "jitter_mean": [1, 2, 0, 1, 2, 0.0]})
    gap = R.paired_gap(dc, "sda")
    assert gap["top1"].startswith("+10.0 ± 0.0 (n=2)") and gap["top1_ahead"] == "2 of 2"
    assert gap["jitter_mean_ahead"] == "0 of 2"
    assert R.paired_gap(dc, "lse") is None


def test_summary_averages_each_seeds_cells_and_says_how_many_seeds():
    profile = {**R.PROFILES["control-sources"], "sources": ["zeroq", "sda"]}
    rows = [dict(kind="main", model="m", source=src, pixel_range="free", seed=seed, bits=b, quantizer=q,
                 top1=0.0, jitter_mean=base + seed + 10 * i, fp32_top1=99.0)
            for src, base, seeds in (("zeroq", 50.0, (0, 1)), ("sda", 80.0, (0,)))
            for seed in seeds for i, (b, q) in enumerate(profile["cells"])]
    rows.append(dict(rows[-1], seed=5, bits="3/3", quantizer="adaround"))  # another profile's cell: not counted
    lines = R.control_summary_section("m", pd.DataFrame(rows), profile, profile["cells"], "range rules")
    zq = next(line for line in lines if line.startswith("| zeroq | as generated"))
    sda = next(line for line in lines if line.startswith("| sda | as generated"))
    assert zq.split(" | ")[2] == "2" and zq.endswith("| 65.5 ± 0.5 |")  # cells 50..80 (+seed), seeds 0 and 1
    assert sda.split(" | ")[2] == "1" and sda.endswith("| 95.0 ± 0.0 |")


def test_control_sources_page_shows_the_reconstruction_cells_its_sibling_profile_runs():
    cs, recon = R.PROFILES["control-sources"], R.PROFILES["control-sources-recon"]
    assert recon["cache"] == cs["cache"] and "rendered_by" in recon
    assert set(R.profile_cells(recon)) == set(R.shown_cells(cs)) - set(R.profile_cells(cs))
    assert not set(recon["sources"]) & set(R.PROFILES["control"]["sources"])  # those have it from the control
    rows = [dict(kind="main", model="m", source="sda", pixel_range="free", seed=seed, epsilon=None, bits=b, quantizer=q,
                 top1=50.0 + seed + (b == "2/4"), jitter_mean=60.0, fp32_top1=99.0)
            for seed in (0, 1) for b, q in R.shown_cells(cs)]
    page = R.render_control(rows, "control-sources", {**cs, "sources": ["zeroq", "sda", "lse", "sci", "dsg"]},
                            allow_mixed=True)
    assert "### W2A4 `adaround`" in page and "## Every source at a glance: reconstruction" in page
    recon_line = page.split("at a glance: reconstruction")[1].split("| sda | as generated")[1].splitlines()[0]
    assert recon_line.endswith("| 51.0 ± 0.5 |")  # top-1 (not the jitter mean), each seed's cells averaged first


def test_the_reproduction_page_says_what_has_not_run():
    """Quantizers, models, sources, widths and the epsilon ablation the profile asks for and no row has."""
    profile = R.PROFILES["quick"]
    rows = [dict(kind="main", model="resnet20_mnist", source=s, seed=0, bits=b, quantizer=q, top1=90.0,
                 fp32_top1=99.2, epsilon=None) for s in ("zeroq", "dsg") for b in ("4/4", "3/3")
            for q in ("minmax", "dsg-avg")]
    page = R.render(rows, "quick", profile)
    others = ", ".join(f"`{s}`" for s in profile["sources"] if s not in ("zeroq", "dsg"))
    assert (f"**Not run yet on this code:** quantizers `adaround`, `brecq`; models `mobilenetv2_mnist`; "
            f"sources {others}; widths `8/8`, `6/6`, `2/4`; the epsilon ablation "
            "(`python bench/reproduce.py --profile quick` resumes).") in page
    assert "### quantizer `minmax`" in page
    full = [dict(r, quantizer=q, model=m, source=s, bits=b) for r in rows[:1]
            for q in ("adaround", "brecq", "minmax", "dsg-avg") for m in profile["models"]
            for s in profile["sources"] for b in profile["bits"]]
    eps = [dict(full[0], kind="epsilon", epsilon=0.5, seed=seed) for seed in range(profile["seeds"])]
    assert "Not run yet" not in R.render(full + eps, "quick", profile)  # mobilenetv2_mnist has no ablation
    assert ("**Not run yet on this code:** the epsilon ablation's seeds 1-4 on `resnet20_mnist` ("
            in R.render(full + eps[:1], "quick", profile))
    assert R.render(full, "quick", profile).count("Not run yet on this code:** the epsilon ablation (") == 1


def test_the_500_step_control_runs_on_the_full_profiles_sets_without_new_generation():
    """control-full: the full profile's generation settings and set cache, its own rows, and only the pixel
    handlings that need no new set (clamp-after is the free set clamped)."""
    cf, full = R.PROFILES["control-full"], R.PROFILES["full"]
    assert cf["sets"] == "full" and "cache" not in cf  # the full profile's sets, rows of its own
    assert (cf["samples"], cf["iterations"]) == (full["samples"], full["iterations"])
    assert cf["pixel_ranges"] == ["free", "clamp-after"] and cf["jitter"] == [0.8, 1.0, 1.2]
    assert R.control_doc("control-full") == "pixel-range-full.md"
    tasks = R.plan(cf, NoRows())
    per_seed = 7 * 2 + 1  # seven synthetic sources as generated and clamped after; real images as they are
    assert {t.pixel_range for t in tasks} == {"free", "clamp-after"} and len(tasks) == 2 * 10 * per_seed
    assert {"sda", "lse", "sci", "sda+lse"} <= set(cf["sources"])  # DSG's parts one at a time, with jitter


def test_a_run_can_take_some_pixel_handlings_only():
    """--pixel-ranges free: the part of the control that the time at hand allows; an unknown handling is named."""
    cf = R.PROFILES["control-full"]
    tasks = R.plan(R.restrict(cf, sources="sda,lse", pixel_ranges="free"), NoRows())
    assert {t.pixel_range for t in tasks} == {"free"} and {t.source for t in tasks} == {"sda", "lse"}
    assert len(tasks) == 2 * 10 * 2
    with pytest.raises(SystemExit, match="clip"):
        R.restrict(cf, pixel_ranges="clip")
    assert "pixel_ranges" not in R.restrict(R.PROFILES["full"], pixel_ranges="free")  # the paper's protocol as is


def committed_rows(name: str) -> list[dict]:
    """bench/rows/<name>.jsonl as written, every line."""
    return [json.loads(line) for line in (REPO / "bench" / "rows" / f"{name}.jsonl").read_text().splitlines()
            if line.strip()]


def test_the_500_step_control_page_is_the_render_of_its_rows():
    rows = committed_rows("control-full")
    page = R.render_control(rows, "control-full", R.PROFILES["control-full"])
    assert page.splitlines()[3:] == (REPO / "docs" / "pixel-range-full.md").read_text().splitlines()[3:]


def test_a_page_names_the_pixel_handlings_its_profile_ran():
    """The intro counts and names the handlings in words, and says when clip did not run."""
    assert R.pixel_ways(["free", "clamp-after", "clip"]).startswith("Every synthetic set three ways:")
    two = R.pixel_ways(R.PROFILES["control-full"]["pixel_ranges"])
    assert two.startswith("Every synthetic set two ways:") and "did not run it" in two
    unseen = (REPO / "docs" / "pixel-range-unseen.md").read_text()
    assert R.pixel_ways(R.PROFILES["unseen"]["pixel_ranges"]) in unseen.splitlines()


def test_a_page_of_rows_from_several_machines_says_which_machine_computed_what():
    """The full profile's rows come from two machines (tests/test_results_quick.py checks its page is their render)."""
    rows = committed_rows("full")
    page = (REPO / "docs" / "results-full.md").read_text()
    assert "## Which machine computed what" in page and "The results come from 2 machines" in page
    main = pd.DataFrame([r for r in rows if r["kind"] == "main"])
    table = [line for line in R.machine_section(main) if line.startswith("| ") and not line.startswith("| machine")]
    assert sum(int(line.rsplit("|", 2)[1]) for line in table) == len(main)  # every result, once
    assert R.machine_section(main[main.machine == main.machine.iloc[0]]) == []  # one machine: nothing to say


def test_a_run_can_take_the_epsilon_ablation_alone():
    """--only-epsilons: DSG's sets at each epsilon of the profile, at the default cell, and nothing else."""
    full = R.PROFILES["full"]
    tasks = R.plan(R.restrict(full, only_epsilons=True), NoRows())
    assert len(tasks) == 2 * 10 * len(full["epsilons"])
    assert {(t.source, t.combos) for t in tasks} == {("dsg", ((R.DEFAULT_BITS, R.DEFAULT_QUANTIZER),))}
    assert {t.epsilon for t in tasks} == set(full["epsilons"])
    with pytest.raises(SystemExit, match="no --sources"):
        R.restrict(full, sources="dsg", only_epsilons=True)
