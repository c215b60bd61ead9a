"""The evidence bundle the first page draws: it is committed, readable without a model, records how it
was made, its numbers are the ones docs/results.md reports, and the page's sentences follow its data."""

from pathlib import Path

import pandas as pd
import pytest

from dashboard.evidence_bundle import gap, images_of, load, summary

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def bundle():
    b = load()
    assert b is not None, "docs/data/evidence.json.gz is committed"
    return b


def test_the_bundle_records_its_code_version_and_commands(bundle):
    assert len(bundle.meta["commit"]) == 40 and bundle.meta["command"].startswith("python bench/evidence.py")
    assert any("--parts examples" in c for c in bundle.meta["parts"])
    assert set(bundle.models) == {"resnet20_mnist", "mobilenetv2_mnist"}


def test_its_numbers_are_the_ones_docs_results_reports(bundle):
    """docs/results.md's control table (resnet20_mnist, mean ± std over seeds) from the bundle's rows."""
    text = (DOCS / "results.md").read_text()
    s = summary(bundle.cells).set_index(["model", "source", "pixel_range", "bits", "quantizer"])
    for key in [("zeroq", "free", "W3A3", "minmax"), ("dsg", "free", "W3A3", "minmax"),
                ("zeroq", "clip", "W3A3", "minmax"), ("dsg", "clip", "W3A3", "minmax"),
                ("zeroq", "free", "W4A4", "dsg-avg"), ("zeroq", "clamp-after", "W4A4", "dsg-avg")]:
        row = s.loc[("resnet20_mnist", *key)]
        assert row["count"] == bundle.meta["seeds"] == 10
        assert f"{row['mean']:.1f} ± {row['std']:.1f}" in text, key
    diff, _, n = gap(bundle.cells, "resnet20_mnist", "W3A3", "minmax", "clip")
    assert n == 10 and f"+{diff:.1f}" in text


def test_every_example_decodes_to_its_images(bundle):
    for e in bundle.examples:
        pixels = images_of(e)
        assert pixels.shape == tuple(e["shape"]) and pixels.shape[1:] == (28, 28)
        assert len(e["pred"]) == pixels.shape[0] and len(e["mean"]) == len(bundle.models[e["model"]]["layers"])


def cells(rows):
    return pd.DataFrame([{"model": "m", "bits": "W3A3", "quantizer": "minmax", "pixel_range": pr, "source": src,
                          "seed": seed, "top1": top1, "jitter_mean": top1}
                         for pr, src, values in rows for seed, top1 in enumerate(values)])


def test_the_lesson_follows_the_data():
    """The headline is computed: a lead that vanishes with clip reads 'all of it was pixel range', one
    that stays reads 'a smaller lead survives' — the same code, other numbers, other words."""
    from dashboard.evidence_bundle import Bundle
    from dashboard.views.evidence import effects, lesson

    def headline(clip_dsg):
        df = cells([("free", "dsg", [97, 96, 98, 97, 96]), ("free", "zeroq", [50, 60, 40, 55, 45]),
                    ("clip", "dsg", clip_dsg), ("clip", "zeroq", [86, 85, 87, 86, 85])])
        b = Bundle({}, {"m": {}}, df, pd.DataFrame(), [], pd.DataFrame(), [])
        return lesson(effects(b, "m"), "m")
    vanished = headline([86, 85, 86, 87, 86])
    assert "all of it was pixel range" in vanished
    assert "+46.8 ± 3.6 s.e. points as generated" in vanished and "(n = 5 seeds each)" in vanished
    assert "ZeroQ beats DSG" not in vanished
    assert "a smaller lead survives" in headline([96, 95, 96, 97, 96])
    flipped = headline([60, 58, 61, 59, 60])  # clipping DSG's pixels costs it more than ZeroQ
    assert "all of it was pixel range" in flipped and "with clip **ZeroQ is ahead instead**" in flipped


def test_a_live_run_with_free_pixels_is_told_how_much_of_the_lead_is_range():
    """The Accuracy page's note for a run: it sends a free-pixel run to clip when the bundle's lead
    mostly vanishes with clip, and says nothing of the kind when the lead survives."""
    from types import SimpleNamespace

    from dashboard.evidence_bundle import Bundle
    from dashboard.views.accuracy import range_note

    plan = SimpleNamespace(model="m", generation=SimpleNamespace(pixel_range="free"))

    def note(clip_dsg, clip_zeroq=(86, 85, 87, 86, 85)):
        df = cells([("free", "dsg", [97, 96, 98, 97, 96]), ("free", "zeroq", [50, 60, 40, 55, 45]),
                    ("clip", "dsg", clip_dsg), ("clip", "zeroq", clip_zeroq)])
        return range_note(plan, "W3A3", "minmax", Bundle({}, {"m": {}}, df, pd.DataFrame(), [], pd.DataFrame(), []))
    vanishing = note([87, 86, 87, 88, 87])
    assert "+46.8 points with free pixels and +1.2 with the pixels clipped" in vanishing
    assert "Most of a free-pixel lead is pixels outside" in vanishing
    survives = note([96, 95, 96, 97, 96], clip_zeroq=(60, 61, 59, 60, 60))
    assert "+36.0 with the pixels clipped" in survives and "Most of" not in survives
    only_w3a3 = Bundle({}, {"m": {}}, cells([("free", "dsg", [97]), ("free", "zeroq", [50])]), pd.DataFrame(), [],
                       pd.DataFrame(), [])
    assert range_note(plan, "W4A4", "minmax", only_w3a3) == "" and range_note(plan, "W3A3", "minmax", only_w3a3) == ""


def test_noise_that_calibrates_as_well_as_dsg_is_said_and_not_otherwise():
    from dashboard.evidence_bundle import Bundle
    from dashboard.views.evidence import noise_note

    def note(noise):
        df = cells([("free", "dsg", [97, 96, 98]), ("free", "gaussian", noise), ("free", "real", [86, 85, 87]),
                    ("free", "zeroq", [50, 60, 40])])
        b = Bundle({}, {"m": {}}, df, pd.DataFrame(), [], pd.DataFrame(), [])
        return noise_note(b, "m", "W3A3", "minmax")
    said = note([97, 97, 98])
    assert "Gaussian noise (97.3) calibrates as well as DSG (97.0) and better than real images (86.0)" in said
    assert note([70, 72, 71]) == ""


def test_the_first_scatter_shows_the_median_layer_and_the_variants_are_ranked_against_their_noise():
    from dashboard.evidence_bundle import Bundle
    from dashboard.views.evidence import multiples_takeaway, typical_layer

    ratios = [0.5, 3.0, 1.5, 2.0, 9.0]  # DSG/ZeroQ spread per layer: the median is 2.0, at layer 3
    examples = [{"model": "m", "source": "dsg", "spread_mean": [r * 0.1 for r in ratios]},
                {"model": "m", "source": "zeroq", "spread_mean": [0.1] * 5}]
    b = Bundle({}, {"m": {"layers": [f"bn{k}" for k in range(5)]}}, pd.DataFrame(), pd.DataFrame(), examples,
               pd.DataFrame(), [])
    assert typical_layer(b, "m", "free") == 3

    rows = [{"variant": v, "bits": "W3A3", "quantizer": "minmax", "top1": t}
            for v, tops in (("SDA", [96, 97, 96]), ("LSE", [60, 62, 61]), ("SCI", [90, 30, 95])) for t in tops]
    words = multiples_takeaway(pd.DataFrame(rows))
    assert "**SDA** has the highest mean (96.3)" in words and "clearly below it: LSE 61.0" in words
    assert "too spread over seeds to rank: SCI 71.7 (seeds 30.0-95.0)" in words and "n = 3 seeds" in words
    close = multiples_takeaway(pd.DataFrame([*rows, *({"variant": "SDA+LSE", "bits": "W3A3", "quantizer": "minmax",
                                                       "top1": t} for t in (95, 96, 95))]))
    assert "close to it: SDA+LSE 95.3" in close


def test_the_samples_grid_names_the_most_even_set_and_says_when_another_covers_more_classes():
    from dashboard.views.explore import samples_takeaway

    facts = {"DSG": (3, 0.47), "ZeroQ": (4, 0.45), "Gaussian": (1, 0.0), "Real": (6, 0.7)}
    words = samples_takeaway(facts, 10)
    assert "DSG 3/10, ZeroQ 4/10" in words and "**DSG**'s predictions are spread most evenly" in words
    assert "**Gaussian**'s least" in words and "ZeroQ covers more classes (4) but less evenly" in words
    assert "covers more" not in samples_takeaway({**facts, "ZeroQ": (2, 0.3)}, 10)


def test_a_run_outside_the_bundles_seeds_is_flagged_and_one_inside_is_not():
    from dashboard.views.accuracy import outside_bundle

    ref = pd.DataFrame({"set": ["Gaussian"] * 3 + ["DSG"] * 3, "top1": [96.0, 97.0, 98.0, 95.0, 97.0, 99.0]})
    run = pd.DataFrame({"set": ["Gaussian"] * 3 + ["DSG"] * 3, "top1": [60.0, 98.0, 86.0, 96.0, 97.0, 98.0]})
    words = outside_bundle(run, ref)
    assert "Gaussian 81.3 (below all 3 bundle seeds, 96.0-98.0)" in words and "DSG" not in words
    assert outside_bundle(run[run.set == "DSG"], ref) == "" and outside_bundle(run, None) == ""


def test_the_loss_chart_says_converged_only_when_the_curves_show_it():
    import numpy as np

    from dashboard.views.explore import convergence_takeaway
    from dsg_core.diagnostics import convergence, plateau

    t = np.arange(1, 321)
    levels = list(8 + 100 * np.exp(-t / 20))   # ZeroQ-like: levels off early
    hinge = list(np.exp(-t / 20))               # DSG-like: decays geometrically to ~1e-7
    falling = list(100 - 0.25 * t)              # stopped while still falling
    assert plateau(levels) < 150 and convergence(levels).levelled and not convergence(hinge).levelled
    assert convergence(hinge).near_zero and not convergence(falling).converged
    words = convergence_takeaway({("ZeroQ", 0): levels, ("ZeroQ", 1): levels, ("DSG", 0): hinge})
    assert "ZeroQ levelled off by iteration" in words and "of 320" in words and "DSG fell to" in words
    stopped = convergence_takeaway({("ZeroQ", 0): levels, ("ZeroQ", 2): falling})
    assert "**ZeroQ was still falling when it stopped** (seed 2)" in stopped
    mixed = convergence_takeaway({("ZeroQ", 0): levels, ("ZeroQ", 1): hinge})
    assert "on 1 of 2 seeds" in mixed and "on the others" in mixed


def test_verdicts_say_a_wide_gap_is_noise_not_no_difference_and_spread_verdict_follows_the_rhos():
    from dashboard.views.evidence import spread_verdict, verdict

    base = {"effect": False, "jitter_gap": 1.0}
    noise = "not separable from seed noise (-14.1 ± 9.7 s.e.; range jitter +1.0)"
    assert verdict({**base, "gap": -14.1, "se": 9.7}) == noise
    unmeasured = {**base, "gap": 0.3, "se": 0.2, "jitter_gap": float("nan")}
    assert verdict(unmeasured) == "no measured difference (+0.3 ± 0.2 s.e.)"
    reversed_ = verdict({**base, "gap": 4.3, "se": 0.3, "jitter_gap": -7.7})
    assert reversed_.endswith("range jitter gives -7.7, the other way round: no stable winner")
    gone = verdict({**base, "gap": 4.3, "se": 0.3, "jitter_gap": 0.5})
    assert gone.endswith("the grid's luck (the lead does not hold with the ranges moved)")
    assert verdict({**base, "gap": 0.3, "se": 0.2}).startswith("no measured difference (+0.3")
    assert verdict({**base, "gap": 0.8, "se": 0.2}).startswith("a difference under 2 points (+0.8")  # 4 s.e., small
    inside = "the sets inside the valid range"
    assert "partly the grid's luck" in spread_verdict([("all", 80, 0.7, 0.6), (inside, 50, 0.63, 0.04)])
    assert "still predicts" in spread_verdict([(inside, 50, 0.7, 0.6)])
    assert "does not predict" in spread_verdict([(inside, 50, -0.01, 0.31)])


def test_the_samples_grid_calls_a_tie_a_tie():
    from dashboard.views.explore import samples_takeaway

    words = samples_takeaway({"DSG": (3, 0.473), "ZeroQ": (4, 0.4731), "Gaussian": (1, 0.0)}, 10)
    assert "DSG's and ZeroQ's predictions are (a tie) spread most evenly" in words and "covers more" not in words


def test_the_components_takeaway_contrasts_the_variants_with_sda_against_those_without():
    from dashboard.views.evidence import multiples_takeaway
    rows = [{"variant": v, "bits": "W2A4", "quantizer": "adaround", "top1": t + seed * 0.1, "seed": seed}
            for v, t in (("SDA", 90.0), ("SDA+LSE", 88.0), ("LSE", 98.0), ("SCI", 97.0)) for seed in range(5)]
    words = multiples_takeaway(pd.DataFrame(rows))
    assert "with SDA 89.2, without it 97.7: SDA costs accuracy here" in words
    flat = [{**r, "top1": 95.0} for r in rows]
    assert "no clear SDA effect" in multiples_takeaway(pd.DataFrame(flat))
    eps = [{**r, "variant": f"ε {i}"} for i, r in enumerate(rows)]
    assert "SDA" not in multiples_takeaway(pd.DataFrame(eps))  # the epsilon family has no such split
    # a gap that one seed makes: SDA's variants collapse on seed 0 only, so the gap is under 2 s.e.
    swing = [{**r, "top1": (40.0 if r["seed"] == 0 and "SDA" in r["variant"] else 95.0)} for r in rows]
    assert "under two standard errors" in multiples_takeaway(pd.DataFrame(swing))


def test_labels_of_close_reference_lines_stack_instead_of_overlapping():
    import pandas as pd

    from dashboard.vega import LABEL_PX, label_lifts, seed_dots
    assert label_lifts([99.1, 98.5, 98.9]) == [2, 0, 1]  # FP32, ZeroQ, real within a point: three rows
    assert label_lifts([99.1, 60.0, 98.0]) == [1, 0, 0]  # ZeroQ far below: on its own line
    df = pd.DataFrame({"set": ["SDA"] * 2, "seed": [0, 1], "top1": [95.0, 96.0]})
    spec = seed_dots(df, 99.1, "t", lines={"ZeroQ": 98.5, "Real": 98.9}).to_dict()
    offsets = sorted(layer["mark"]["dy"] for layer in spec["layer"]
                     if isinstance(layer.get("mark"), dict) and layer["mark"].get("type") == "text")
    assert offsets == [-2 - 2 * LABEL_PX, -2 - LABEL_PX, -2]


def test_the_w2a4_note_says_who_leads_and_error_bars_stay_on_the_axis():
    import pandas as pd

    from dashboard.vega import seed_dots
    from dashboard.views.evidence import w2_words
    assert w2_words(-4.9) == "ZeroQ is ahead" and w2_words(3.0) == "DSG is ahead"
    assert w2_words(-0.8) == "neither leads by a difference worth naming"
    df = pd.DataFrame({"set": ["DSG"] * 3, "seed": [0, 1, 2], "top1": [99.0, 99.5, 40.0]})
    layers = seed_dots(df, 99.2, "t").to_dict()
    bars = [v for name, rows in layers["datasets"].items() for v in rows if "hi" in v]
    assert bars and all(0 <= b["lo"] and b["hi"] <= 100 for b in bars)


def test_the_goal_rows_are_the_ones_docs_best_reports(bundle):
    """`best`, real data and MCT at the goal cells: ten seeds each, and the page's verdicts are the table's
    in docs/best.md (the same rows, the same tests)."""
    from dashboard.views.evidence import goal_tests

    g = bundle.goal
    assert set(g.model) == {"resnet20_mnist", "mobilenetv2_mnist", "vgg_bn_mnist", "allconv_bn_mnist",
                            "lenet_bn_mnist"}
    assert set(g[g.held_out].model) == {"vgg_bn_mnist", "allconv_bn_mnist", "lenet_bn_mnist"}
    assert g.groupby(["model", "set", "bits", "quantizer"]).seed.nunique().min() == 10
    text = (DOCS / "best.md").read_text()
    for model in ("resnet20_mnist", "lenet_bn_mnist"):
        for t in goal_tests(bundle, model):
            b = t["best_rows"].top1
            words = ["yes" if t[k] else "**no**" for k in ("top1", "std", "jitter")]
            row = f"| {t['cell']} | {b.mean():.1f} ± {b.std(ddof=0):.1f} (n=10) |"
            line = next(x for x in text.splitlines() if x.startswith(row))
            assert " | ".join(words) in line, (row, words)
            assert ("**no**" in line.split("|")[-2]) == (t["peer"] is False), line


def goal_bundle(best, real, peer=None, cell=("W3A3", "minmax")):
    from dashboard.evidence_bundle import Bundle
    rows = [{"model": "m", "set": s, "seed": k, "bits": cell[0], "quantizer": cell[1], "top1": v, "jitter_mean": v,
             "held_out": False} for s, values in (("best", best), ("real", real), ("mct", peer or []))
            for k, v in enumerate(values)]
    return Bundle({}, {"m": {}}, pd.DataFrame(), pd.DataFrame(), [], pd.DataFrame(), [], goal=pd.DataFrame(rows))


def test_the_goal_takeaway_follows_the_data():
    """Met, a spread that real data shares, and a shortfall against MCT within the noise each read as such."""
    from dashboard.views.evidence import goal_overall, goal_table, goal_takeaway

    met = goal_takeaway(goal_bundle([98.0, 98.1, 98.0], [98.2, 98.0, 98.1]), "m")
    assert "meets every test at 1 of 1 cells" in met and "misses" not in met
    spread = goal_bundle([90.0, 95.0, 99.0], [85.0, 92.0, 99.0])
    assert "std 3.7 over 3 seeds, real data's own 5.7" in goal_takeaway(spread, "m")
    assert "Real data's own top-1 spreads beyond the std test at W3A3 minmax on 1 of 1 models" in goal_overall(spread)
    tied = goal_bundle([98.0, 98.4, 98.2], [98.0, 98.2, 98.1], [98.1, 98.5, 98.3])
    tie = goal_takeaway(tied, "m")
    assert "top-1 below MCT's by 0.10" in tie and "a tie in the noise" in tie
    assert goal_table(tied, "m").loc["W3A3 minmax", "≥ MCT"] == "no (-0.10, under 2 s.e.)"
    assert "0 of the 1 where MCT ran (all four tests)" in goal_overall(tied)
    assert "(1 of the other 1 within two standard errors)" in goal_overall(tied)
    assert "0 of the 0 where MCT ran (all four tests) and 0 of the 1 where it did not" in goal_overall(spread)
    clear = goal_takeaway(goal_bundle([90.0, 90.1, 90.0], [98.0, 98.2, 98.1], [98.1, 98.0, 98.1]), "m")
    assert "below MCT's by 8.03" in clear and "tie" not in clear


def steps_bundle(short_zeroq, long_zeroq, long_jitter=None):
    """A page bundle at 200 steps (DSG 97 on every seed, ZeroQ ``short_zeroq``) and a full profile at 500 (ZeroQ
    ``long_zeroq``, range jitter ``long_jitter`` or none), W3A3 min/max, pixels as generated."""
    from dashboard.evidence_bundle import Bundle
    dsg = [97.0, 96.0, 98.0, 97.0, 96.0]
    short = cells([("free", "dsg", dsg), ("free", "zeroq", short_zeroq)])
    long = cells([("free", "dsg", dsg), ("free", "zeroq", long_zeroq)])
    long["jitter_mean"] = long.top1 if long_jitter is None else [*dsg, *long_jitter]
    if long_jitter is None:
        long["jitter_mean"] = float("nan")
    return Bundle({"iterations": 200}, {"m": {}}, short, pd.DataFrame(), [], pd.DataFrame(), [],
                  steps={"model": "other", "iterations": 500, "cells": long})


def test_the_steps_lesson_says_which_verdicts_hold_at_the_papers_steps():
    """A lead that stays holds, one that goes does not, and one whose range jitter was not measured says so;
    a cell without a verdict that moves by more than POINTS is named, one that does not is not."""
    from dashboard.views.evidence import steps_lesson

    far = [50.0, 60.0, 40.0, 55.0, 45.0]
    held = steps_lesson(steps_bundle(far, [52.0, 58.0, 44.0, 50.0, 47.0]), "m")
    assert "With the paper's 500 generation steps" in held and "range jitter not measured there" in held
    assert "the measured verdicts above **hold** at W3A3 minmax as generated" in held and "no longer" not in held
    gone = steps_lesson(steps_bundle(far, [97.0, 96.5, 97.5, 96.5, 96.0]), "m")
    assert "no measured verdict above to check" not in gone
    assert "**no longer a measured verdict** at W3A3 minmax as generated (+0.1 ± 0.5 calibrated; the calibrated " \
        "lead is gone)" in gone
    reversed_ = steps_lesson(steps_bundle(far, [60.0, 50.0, 45.0, 55.0, 40.0], [99.0] * 5), "m")
    assert "no longer a measured verdict" in reversed_ and "range jitter reverses it (-2.20; +46.80 at 200 steps)" \
        in reversed_
    tied = [97.0, 96.0, 98.0, 97.0, 96.0]
    moved = steps_lesson(steps_bundle(tied, [97.0, 96.0, 98.0, 97.0, 96.0], [99.9] * 5), "m")
    assert "no measured verdict above to check" in moved and "under range jitter +0.0 → -2.9, ZeroQ now ahead" not in \
        moved  # the page's jitter equals its top-1 here, so there is no lead under jitter at 200 to reverse
    b = steps_bundle(tied, tied, [99.9] * 5)
    b.cells.loc[b.cells.source == "zeroq", "jitter_mean"] = 90.0  # DSG ahead under jitter at 200 steps only
    moved = ("W3A3 minmax as generated: under range jitter +6.8 at 200 steps → -3.1 at 500 (ZeroQ ahead under range "
             "jitter)")
    assert moved in steps_lesson(b, "m")
    b = steps_bundle(tied, [90.0] * 5, [99.9] * 5)  # and DSG ahead at the calibrated ranges at 500 steps
    b.cells.loc[b.cells.source == "zeroq", "jitter_mean"] = 90.0
    assert ("under range jitter +6.8 at 200 steps → -3.1 at 500 (no stable order: DSG ahead at the calibrated "
            "ranges, ZeroQ under range jitter)") in steps_lesson(b, "m")
    assert steps_lesson(steps_bundle(tied, tied), "m").endswith("no measured verdict above to check.")
    assert steps_lesson(steps_bundle(tied, tied), "unknown") == ""


def test_the_replay_takeaway_says_when_the_order_under_jitter_reverses():
    from dashboard.views.evidence import steps_replay_takeaway

    def replay(zeroq_jitter_long):
        return pd.DataFrame([{"source": src, "seed": seed, "step": step, "cell": "W4A4 dsg-avg", "top1": 98.0,
                              "jitter_mean": {"dsg": 90.0, "zeroq": 84.0 if step == 200 else zeroq_jitter_long}[src]
                              + seed / 10, "out_of_range": 0.4}
                             for src in ("dsg", "zeroq") for seed in range(3) for step in (0, 200, 500)])
    flips = steps_replay_takeaway(replay(97.0), 200, 500)
    assert ("under range jitter +6.0 (DSG ahead on 3 of 3 seeds) at 200 steps, -7.0 (DSG ahead on 0 of 3 seeds) at "
            "500") in flips
    assert "**At W4A4 dsg-avg the order under range jitter reverses between 200 and 500 steps.**" in flips
    assert "ZeroQ 40.0% → 40.0%" in flips
    assert "no stable winner" not in flips, "calibrated, the two are level here"
    assert "More steps do not push the pixels further outside the valid range" in flips
    moving = replay(97.0).assign(top1=lambda d: d.top1 - (d.source == "zeroq") * (d.step == 500) * (6.0 + d.seed))
    assert ("ZeroQ's by up to 8.0 points (seed 2, W4A4 dsg-avg: 98.0 at step 200, 90.0 at 500); DSG's by up to 0.0"
            in steps_replay_takeaway(moving, 200, 500))
    same = steps_replay_takeaway(replay(86.0), 200, 500)
    assert "**The order under range jitter is the same at 200 and 500 steps at every replayed cell.**" in same


def test_the_committed_steps_part_is_the_render_of_the_committed_rows(bundle):
    """docs/data/evidence.json.gz's `steps` is what bench/evidence.py --parts steps makes of bench/rows/: every page
    cell at 500 steps, as generated and clamped after, 10 seeds, each with its range jitter."""
    import json
    import sys
    sys.path.insert(0, str(DOCS.parent / "bench"))
    import evidence as E
    from common import rows_file

    part = E.steps_part(rows_file("control-full"))
    for key in ("cells", "replay"):
        assert bundle.steps[key].equals(pd.DataFrame(json.loads(json.dumps(part[key])))), key
    assert bundle.steps["rows"] == json.loads(json.dumps(part["rows"])) and bundle.steps["iterations"] == 500
    from dashboard.views.evidence import steps_table
    for model in ("resnet20_mnist", "mobilenetv2_mnist"):
        t = steps_table(bundle, model)
        assert len(t) == 8 and set(t.pixels) == {"free", "clamp-after"}, model  # 4 cells x 2 pixel handlings
        assert t.n_long.min() == 10 and not t.jitter_gap_long.isna().any(), model


def test_the_500_step_control_ran_on_the_full_profiles_sets():
    """bench/rows/control-full.jsonl: one code version with the full profile's rows, and where the machine cannot
    change a set (Gaussian noise, real images) the very top-1 the full profile measured; generated sets are
    redrawn on each machine (the rows' machine stamp), so theirs may differ, while one machine gives DSG's
    parts (SDA, LSE, SCI, SDA+LSE: both profiles' rows from the same cached sets) the very same top-1."""
    import json

    def main(name):
        rows = [json.loads(line) for line in (DOCS.parent / "bench" / "rows" / f"{name}.jsonl").read_text().splitlines()
                if line.strip()]
        return rows, {(r["model"], r["source"], r["seed"], r["bits"], r["quantizer"]): (r["top1"], r["machine"])
                      for r in rows if r["kind"] == "main" and r.get("pixel_range", "free") == "free"}
    (control, ours), (full, theirs) = main("control-full"), main("full")
    assert {r["source_hash"] for r in control} == {r["source_hash"] for r in full}
    same = [k for k in ours if k[1] in ("gaussian", "real")]
    assert len(same) == 2 * 2 * 10 * 4 and all(ours[k][0] == theirs[k][0] for k in same)
    parts = [k for k in ours if k[1] in ("sda", "lse", "sci", "sda+lse")]
    assert len(parts) == 4 * 2 * 10 * 4 and all(ours[k] == theirs[k] for k in parts)  # top-1 and machine


def test_docs_results_quotes_the_pages_500_step_check(bundle):
    """docs/results.md's paragraph on the page's 500-step check: its numbers and its count of verdicts are the
    bundle's."""
    from dashboard.views.evidence import steps_table

    text = " ".join((DOCS / "results.md").read_text().split())
    r20, mnv2 = (steps_table(bundle, m).set_index(["cell", "pixels"]) for m in ("resnet20_mnist", "mobilenetv2_mnist"))
    m = r20.loc[("W3A3 minmax", "free")]
    assert (f"W3A3 min/max as generated (DSG ahead by {m.gap_long:.1f} ± {m.se_long:.1f} s.e., range jitter "
            f"{m.jitter_gap_long:+.1f})") in text and m.effect_short
    m = r20.loc[("W4A4 minmax", "free")]
    assert (f"W4A4 min/max as generated (ZeroQ ahead by {-m.gap_long:.1f} ± {m.se_long:.1f}, range jitter "
            f"{m.jitter_gap_long:.1f})") in text and m.effect_short
    m = mnv2.loc[("W3A3 dsg-avg", "clamp-after")]
    assert (f"W3A3 DSG-avg clamped after (DSG ahead by {m.gap_long:.1f} ± {m.se_long:.1f}, range jitter "
            f"{m.jitter_gap_long:+.1f})") in text and m.effect_short
    m = mnv2.loc[("W3A3 dsg-avg", "free")]
    said = f"calibrated lead ({m.gap_long:+.1f} ± {m.se_long:.1f}) but under range jitter only {m.jitter_gap_long:+.2f}"
    assert said in text and m.effect_short and 0 < m.jitter_gap_long < 2
    m = r20.loc[("W4A4 dsg-avg", "free")]
    assert (f"DSG is ahead at the calibrated ranges ({m.gap_long:+.1f} ± {m.se_long:.1f}) while ZeroQ is under range "
            f"jitter ({m.jitter_gap_long:.1f})") in text and not m.effect_short
    assert sum(r20.effect_short) + sum(mnv2.effect_short) == 4, "four measured verdicts: three hold, one does not"


def test_a_lead_left_by_one_in_range_handling_and_reversed_by_the_other_is_not_called_dsgs_own():
    from dashboard.evidence_bundle import Bundle
    from dashboard.views.evidence import effects, lesson

    df = cells([("free", "dsg", [97, 96, 98, 97, 96]), ("free", "zeroq", [50, 60, 40, 55, 45]),
                ("clamp-after", "dsg", [96, 95, 96, 97, 96]), ("clamp-after", "zeroq", [86, 85, 87, 86, 85]),
                ("clip", "dsg", [60, 58, 61, 59, 60]), ("clip", "zeroq", [86, 85, 87, 86, 85])])
    said = lesson(effects(Bundle({}, {"m": {}}, df, pd.DataFrame(), [], pd.DataFrame(), []), "m"), "m")
    assert "with clip **ZeroQ is ahead instead**" in said and "what is left depends on how the pixels are kept" in said
    assert "what survives is not pixel range" not in said


def test_an_untested_calibrated_lead_at_the_papers_steps_is_not_read_as_a_win():
    from dashboard.views.evidence import long_verdict

    r = {"gap_short": 4.3, "se_short": 0.3, "jitter_gap_short": -7.7, "n_short": 10, "effect_short": False,
         "gap_long": 4.2, "se_long": 0.2, "jitter_gap_long": float("nan"), "n_long": 10, "effect_long": True}
    assert long_verdict(r, 200) == ("DSG ahead by 4.2 ± 0.2 s.e. (range jitter not measured): untested, and at 200 "
                                    "steps range jitter reversed this cell's lead (-7.7)")
    assert long_verdict({**r, "jitter_gap_short": 0.5}, 200).endswith("range jitter removed this cell's lead (+0.5)")
    kept = long_verdict({**r, "jitter_gap_short": 6.0}, 200)
    assert kept == "DSG ahead by 4.2 ± 0.2 s.e. (range jitter not measured)"


def test_the_steps_part_names_the_command_behind_missing_rows(tmp_path):
    import sys
    sys.path.insert(0, str(DOCS.parent / "bench"))
    import evidence as E

    from dsg_core.errors import DataError
    with pytest.raises(DataError, match="profile control-full"):
        E.steps_part(tmp_path / "none.jsonl")
