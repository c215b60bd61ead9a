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
    assert "all of it was pixel range" in headline([86, 85, 86, 87, 86])
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
    assert "**SDA** is best (96.3)" in words and "clearly below it: LSE 61.0" in words
    assert "within the seed noise of it: SCI 71.7" in words and "n = 3 seeds" in words
