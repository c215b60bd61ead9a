"""The dashboard through Streamlit's AppTest: every page, the URL settings, a Run, stale views, a
run reopened from a link, history and errors.

One app instance runs the pipeline with tiny settings (8 samples, 5 iterations, one seed) and the
tests after it inspect that instance, so the whole file stays within a few minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402  (after the importorskip)
from streamlit.util import calc_hash  # noqa: E402

from dsg_core.experiments import Plan  # noqa: E402
from dsg_core.runstore import RunStore  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TINY = {"samples": "8", "iterations": "5", "seeds": "1", "eval_images": "100", "compare": "false"}
PAGES = ["evidence", "more", "explore", "accuracy", "qat", "learn", "your-model", "history"]


def new_app(params: dict | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(params or {})
    at.run()
    return open_page(at, page) if page else at


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch pages as the navigation does: st.Page names a callable page by the hash of its URL path
    (AppTest's switch_page only knows file pages)."""
    at._page_hash = calc_hash(page)
    return at.run()


def run_and_wait(at: AppTest, timeout: float = 240, button: str = "run") -> AppTest:
    """Press a button that starts a job, then rerun the script (as the page's polling fragment
    would) until the job ends."""
    at.button(key=button).click().run()
    deadline = time.time() + timeout
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert "job" not in at.session_state, "the job did not finish in time"
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def vega_specs(at: AppTest) -> list[dict]:
    """Each Vega-Lite chart's spec, with ``datasets``: its data sets as frames (Streamlit sends them as Arrow)."""
    import pyarrow as pa
    return [{**json.loads(el.proto.spec),
             "datasets": {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in el.proto.datasets}}
            for el in at.get("vega_lite_chart")]


def marks(spec: dict) -> list[dict]:
    """Every unit view of a Vega-Lite spec (its layers, recursively): mark type and encoding."""
    if "layer" in spec:
        return [m for layer in spec["layer"] for m in marks(layer)]
    mark = spec.get("mark")
    return [{"mark": mark["type"] if isinstance(mark, dict) else mark, "encoding": spec.get("encoding", {})}]


def vega_title(spec: dict) -> str:
    title = spec.get("title", "")
    return title.get("text", "") if isinstance(title, dict) else title


def titles(at: AppTest) -> set[str]:
    return ({s["layout"].get("title", {}).get("text", "") for s in plotly_specs(at)}
            | {vega_title(s) for s in vega_specs(at)})


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def ran(runs_dir):
    """One app that has completed a tiny Run (shared by the tests that inspect results)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DSG_RUNS_DIR", str(runs_dir))
    at = run_and_wait(new_app(TINY, page="explore"))
    yield at
    mp.undo()


def test_the_app_opens_on_the_evidence_with_no_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app()
    assert not at.exception and not errors(at)
    assert at.title[0].value == "DSG Lab · Evidence"
    assert "result" not in at.session_state and "job" not in at.session_state
    lesson = " ".join(i.value for i in at.info)
    assert "DSG beats ZeroQ at" in lesson, lesson
    assert "With the paper's 500 generation steps** (resnet20_mnist" in lesson, "the verdicts checked at 500 steps"
    assert any("Does it hold with the paper's 500 steps" in h.value for h in at.subheader)
    text = " ".join(m.value for m in at.markdown)
    assert "**What the replay shows** (10 seeds, steps 200 and 500 of one run of each set" in text
    specs = vega_specs(at)
    assert len(specs) >= 6  # the scatter, the spread, a chart per cell
    assert not plotly_specs(at), "the first page loads no Plotly (docs/dashboard-speed.md)"
    cells = [s for s in specs if "by pixel handling" in vega_title(s)]
    assert len(cells) >= 3, [vega_title(s) for s in specs]
    for spec in cells:
        units = marks(spec)
        dots = [u for u in units if u["mark"] == "circle"]
        assert dots and any(t.get("field") == "seed" for t in dots[0]["encoding"]["tooltip"]), "every seed a dot"
        assert dots[0]["encoding"]["x"]["field"] == "pixels" and dots[0]["encoding"]["xOffset"]["field"] == "set"
        assert any(u["mark"] == "errorbar" for u in units), "and mean ± std as error bars"
        seeds = pd.concat([d for d in spec["datasets"].values() if "seed" in d]).groupby(["set", "pixels"]).seed
        assert seeds.nunique().min() >= 10, "10 seeds per set and panel"


def test_inside_dsg_shows_the_small_multiples_and_the_replay_from_the_bundle(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = open_page(new_app(), "more")
    assert not at.exception and not errors(at)
    got = titles(at)
    assert any("DSG variants" in t for t in got), got
    assert any("Watch it happen" in t for t in got), got
    assert any("adaround ranges" in t for t in got), "what reconstruction changes, from the bundle's AdaRound cells"
    steps = [s for s in vega_specs(at) if "(seeds 0-4)" in vega_title(s)]
    assert len(steps) == 2, "top-1 along the 500 generation steps, one chart per replayed cell"
    assert pd.concat(steps[0]["datasets"].values()).seed.nunique() == 5, "every seed a thin line"
    text = " ".join(m.value for m in at.markdown)
    assert "with AdaRound (n = " in text and "reconstruction removes it" in text, text[-600:]
    replay = next(s for s in vega_specs(at) if "Watch it happen" in vega_title(s))
    frames = pd.concat(replay["datasets"].values())
    assert frames.iteration.nunique() >= 5, "the replay steps through the snapshots"
    assert replay["params"][0]["bind"]["input"] == "range", "under a slider"


def test_more_evidence_opens_on_the_shipped_recipe_against_real_data_and_mct(tmp_path, monkeypatch):
    """`best` at the goal cells, ten seeds per set as dots, the verdict table and the computed takeaway;
    the radio reaches a held-out model."""
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = open_page(new_app(), "more")
    assert not at.exception and not errors(at)
    assert any("shipped recipe" in h.value for h in at.subheader)
    text = " ".join(m.value for m in at.markdown)
    assert "Over 5 models, `best` meets every test of the goal at" in text
    assert "`best` meets every test at" in text and "on resnet20_mnist" in text
    spec = next(s for s in vega_specs(at) if "goal cells" in vega_title(s))
    seeds = pd.concat([d for d in spec["datasets"].values() if "seed" in d]).groupby(["set", "cell"]).seed.nunique()
    assert set(seeds.index.get_level_values("set")) == {"Best", "Real", "MCT"} and seeds.min() == 10
    assert at.table, "the goal's tests per cell"
    assert "A closer look at the range jitter, W3A3 adaround" in text and "**Every range at once:**" in text
    grid = next(s for s in vega_specs(at) if "every range is scaled" in vega_title(s))
    dots = pd.concat([d for d in grid["datasets"].values() if "seed" in d])
    assert dots.groupby("set").seed.nunique().min() == 5 and dots.factor.nunique() == 13
    at.radio(key="ev_goal_model").set_value("lenet_bn_mnist").run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "on lenet_bn_mnist" in text and "A closer look at the range jitter" not in text, "resnet20's grid only"


def test_every_page_renders_before_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app()
    for page in PAGES:
        open_page(at, page)
        assert not at.exception, page
        assert not errors(at), page
    open_page(at, "learn")
    assert at.latex, "Learn shows the formulas, not behind expanders"
    assert not at.main.expander


def test_query_params_set_the_controls_and_old_links_still_work(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"epsilon": "0.5", "sda": "false", "samples": "16", "iterations": "40", "wbits": "3",
                  "abits": "3", "quantizer": "minmax", "model": "mobilenetv2_mnist", "seeds": "2",
                  "pixel_range": "clip"})
    assert not at.exception
    assert at.slider(key="epsilon").value == 0.5
    assert at.toggle(key="sda").value is False
    assert at.number_input(key="samples").value == 16
    assert at.number_input(key="iterations").value == 40
    assert at.number_input(key="seeds").value == 2
    assert at.select_slider(key="wbits").value == 3
    assert at.selectbox(key="quantizer").value == "minmax"
    assert at.selectbox(key="model").value == "mobilenetv2_mnist"
    assert not at.sidebar.warning  # every parameter was taken
    old = new_app({"eps": "0.6", "iters": "30", "lse_w": "3", "eval": "150"})
    assert old.slider(key="epsilon").value == 0.6 and old.number_input(key="iterations").value == 30
    assert old.slider(key="lse_weight").value == 3.0 and old.number_input(key="eval_images").value == 150


def test_invalid_link_parameters_are_named_as_text(tmp_path, monkeypatch):
    """Streamlit drops an invalid bound value silently and shows the default: the sidebar says so,
    with the link's text escaped (a markdown link in it is never rendered) and no crash on inf."""
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"epsilon": "2` [CLICKME](https://evil.example/phish) ![IMG](https://evil.example/t.png) `",
                  "wbits": "9", "model": "nope", "iterations": "inf", "seeds": "2"})
    assert not at.exception
    assert at.slider(key="epsilon").value == 0.9 and at.select_slider(key="wbits").value == 3  # the defaults
    assert at.number_input(key="seeds").value == 2
    text = " ".join(w.value for w in at.sidebar.warning)
    for part in ("using `0.9`", "`wbits=9`", "`model=nope`", "`iterations=inf`"):
        assert part in text, (part, text)
    assert "`` epsilon=2` [CLICKME]" in text, "the link's text sits in a code span: never a live link"


def test_run_fills_session_state_the_store_and_the_link(ran, runs_dir):
    assert not ran.exception and not errors(ran)
    result = ran.session_state["result"]
    assert set(result.results["set"]) == {"DSG", "ZeroQ", "Gaussian", "Real"}
    assert set(result.results["bits"]) == {"W3A3"} and {"jitter_mean"} <= set(result.results)
    runs = RunStore(runs_dir).list()
    assert [r.id for r in runs] == [result.run_id]
    assert set(runs[0].set_names()) == {"dsg_s0", "zeroq_s0", "gaussian_s0"}
    assert Plan.from_dict(runs[0].config["plan"]) == result.plan
    assert ran.query_params["run"] in (str(result.run_id), [str(result.run_id)])
    assert any("finished" in s.value for s in ran.success)
    assert result.extras.get("snapshots"), "the Run keeps snapshots for the replay"


EXPLORE_TABS = ["Samples", "Homogenization", "Embedding", "Diversity metrics"]


def show_tab(at: AppTest, tab: str) -> AppTest:
    """Only the open tab of Explore is drawn (in the browser a switch reruns the app and sets the
    URL's ``tab``, which a bound widget reads first: set both, as a click does)."""
    at.session_state["tab"] = at.query_params["tab"] = tab
    return at.run()


def test_explore_and_accuracy_show_charts_with_data(ran):
    specs, vspecs, text, got = [], [], [], set()
    open_page(ran, "explore")
    for tab in EXPLORE_TABS:
        show_tab(ran, tab)
        assert not ran.exception, tab
        specs, vspecs, got = specs + plotly_specs(ran), vspecs + vega_specs(ran), got | titles(ran)
        text += [m.value for m in ran.markdown]
    open_page(ran, "accuracy")
    assert not ran.exception
    specs, vspecs, got = specs + plotly_specs(ran), vspecs + vega_specs(ran), got | titles(ran)
    captions = " ".join(c.value for c in ran.caption)
    assert "Spearman" in captions and "(Evidence page, section 5)" in captions  # the bundle's n, not a few runs'
    for expected in ("Per-sample statistics", "Pre-BN activations", "Spread of per-sample", "SDA slack band",
                     "Penultimate features", "W3A3, minmax", "Similarity spectrum", "Pixel values",
                     "one objective per panel", "Watch it happen"):
        assert any(expected in t for t in got), f"no chart titled {expected!r}: {got}"
    assert all(s["data"] for s in specs), "every chart has traces"
    assert all(any(len(d) for d in s["datasets"].values()) for s in vspecs), "every chart has data"
    text = " ".join(text)
    assert "What this grid shows" in text and "What this shows" in text
    show_tab(open_page(ran, "explore"), "Samples")
    assert len(ran.image) >= 4 and "%" in ran.image[0].captions[0]


def test_plot_selectors_do_not_regenerate(ran):
    before = ran.session_state["result"]
    show_tab(open_page(ran, "explore"), "Homogenization").selectbox(key="layer").set_value(3).run()
    show_tab(ran, "Embedding").radio(key="color").set_value("class").run()
    assert not ran.exception
    assert ran.session_state["result"] is before


def test_a_changed_setting_marks_the_view_stale_at_once(ran):
    open_page(ran, "accuracy")
    assert not any("Stale" in w.value for w in ran.warning)
    ran.slider(key="epsilon").set_value(0.5).run()
    stale = " ".join(w.value for w in ran.warning if "Stale" in w.value)
    assert "ε is 0.5, this view shows 0.9" in stale
    ran.button(key="restore_settings").click().run()
    assert ran.slider(key="epsilon").value == 0.9
    assert not any("Stale" in w.value for w in ran.warning)


def test_a_link_with_a_run_id_reopens_the_run_without_running(ran, runs_dir, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(runs_dir))
    run_id = ran.session_state["result"].run_id
    fresh = new_app({"run": str(run_id)}, page="accuracy")
    assert not fresh.exception
    assert "job" not in fresh.session_state, "nothing recomputed"
    assert fresh.session_state["result"].run_id == run_id
    assert fresh.number_input(key="samples").value == 8, "the sidebar shows the run's settings"
    assert not any("Stale" in w.value for w in fresh.warning)
    bad = new_app({"run": "999"})
    assert not bad.exception and any("not a saved run" in w.value for w in bad.warning)


def test_changing_epsilon_reruns_generation_with_new_margins(ran, runs_dir):
    first = ran.session_state["result"]
    ran.slider(key="epsilon").set_value(0.5)
    run_and_wait(ran)
    second = ran.session_state["result"]
    assert second.run_id != first.run_id
    store = RunStore(runs_dir)
    d1 = store.get(first.run_id).load_set("dsg_s0").delta
    d2 = store.get(second.run_id).load_set("dsg_s0").delta
    assert d1 is not None and d2 is not None
    assert torch.all(d2 < d1), "a lower epsilon quantile gives tighter margins"
    assert store.get(second.run_id).config["plan"]["generation"]["epsilon"] == 0.5
    ran.slider(key="epsilon").set_value(0.9).run()


def test_small_multiples_of_epsilon(ran):
    run_and_wait(open_page(ran, "accuracy"), button="multiples_epsilon")
    assert not ran.exception
    done = ran.session_state["ablation-epsilon"]
    assert [k for k in done if k.startswith("ε")] == ["ε = 0.5", "ε = 0.7", "ε = 0.9", "ε = 1"]
    assert any("DSG variants (epsilon)" in t for t in titles(ran))
    assert any("variants' means span" in m.value for m in ran.markdown)


def test_history_reload_sets_the_sidebar(ran, runs_dir):
    store = RunStore(runs_dir)
    oldest = store.list()[-1]
    open_page(ran, "history")
    ran.selectbox(key="history_run").set_value(oldest.id)
    ran.button(key="history_load").click().run()
    assert not ran.exception
    assert ran.session_state["result"].run_id == oldest.id
    assert ran.slider(key="epsilon").value == 0.9
    ids = [r.id for r in store.list()]
    ran.selectbox(key="history_run").set_value(oldest.id)
    ran.button(key="history_delete").click().run()  # attack: one click removed a run shared by every session
    assert not ran.exception and [r.id for r in store.list()] == ids  # it asks first
    assert any(f"Delete run #{oldest.id}" in w.value and "shared" in w.value for w in ran.warning)
    ran.button(key="history_delete_no").click().run()
    assert [r.id for r in store.list()] == ids and not any("Delete run" in w.value for w in ran.warning)
    ran.button(key="history_delete").click().run()
    ran.button(key="history_delete_yes").click().run()
    assert not ran.exception and [r.id for r in store.list()] == [i for i in ids if i != oldest.id]
    ran.button(key="history_undo").click().run()  # and can be undone: same id, same files
    assert [r.id for r in store.list()] == ids and store.get(oldest.id).set_names() == oldest.set_names()
    ran.button(key="history_delete").click().run()
    ran.button(key="history_delete_yes").click().run()
    assert len(store.list()) == len(ids) - 1


def test_cancel_stops_the_run_and_keeps_the_app_usable(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({**TINY, "iterations": "2000"})
    at.button(key="run").click().run()
    assert "job" in at.session_state
    at.button(key="cancel").click().run()
    deadline = time.time() + 60
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception
    assert any("cancelled" in w.value for w in at.warning)
    assert "result" not in at.session_state
    assert not at.button(key="run").disabled
    assert RunStore(tmp_path).list() == []


def test_own_weights_are_checked_and_used(tmp_path, monkeypatch):
    from dsg_core.models.registry import CHECKPOINT_DIR
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app(page="your-model")
    data = (CHECKPOINT_DIR / "resnet20_mnist.safetensors").read_bytes()
    at.file_uploader(key="byom_weights").set_value(("mine.safetensors", data, "application/octet-stream"))
    at.run()
    assert any("Weights OK" in s.value for s in at.success)
    at.button(key="byom_use").click().run()
    assert not at.exception
    assert at.session_state["custom"]["label"] == "mine.safetensors"
    assert any("mine" in c.value for c in at.sidebar.caption)


def test_model_without_weights_shows_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"model": "resnet18"})
    assert not at.exception
    assert any("not available offline" in e for e in errors(at))
    assert at.button(key="run").disabled


def test_foreign_upload_shows_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app(page="your-model")
    at.file_uploader(key="byom_weights").set_value(("weights.pt", b"this is not a state dict",
                                                    "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("cannot read weights" in e for e in errors(at))


def test_background_job_started_from_the_page_survives_a_new_session(tmp_path, monkeypatch):
    """Start a job from one session; a fresh session (a refresh, another browser) sees it finish."""
    from dsg_core.jobs import JobStore
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"iterations": "20"}, page="history")
    assert not at.exception
    at.number_input(key="job_samples").set_value(8)
    next(b for b in at.button if b.label == "Start in the background").click().run()
    assert not at.exception
    store = JobStore(tmp_path / "jobs")
    (job,) = store.list()
    deadline = time.time() + 150
    while store.get(job.id).status == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(job.id).status == "done", store.log_tail(job)
    fresh = new_app(page="history")
    assert not fresh.exception
    text = " ".join(m.value for m in fresh.markdown)
    assert f"#{job.id}" in text and "done" in text and "8 samples × 20 it" in text


def test_generator_qat_page_trains_and_shows_samples_and_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"eval_images": "100"}, page="qat")
    assert not at.exception
    at.number_input(key="qat_epochs").set_value(1)
    at.number_input(key="qat_iters").set_value(5)
    next(b for b in at.button if b.label == "Train").click().run()
    deadline = time.time() + 150
    while at.session_state["qat_job"].status == "running" and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    at.run()
    assert not at.exception
    job = at.session_state["qat_job"]
    assert job.status == "done", job.error
    assert job.tracker.samples is not None and job.tracker.samples.shape[0] == 10
    assert [r["epoch"] for r in job.tracker.accuracy] == [0, 1]
    assert any("after QAT" in s.value for s in at.success)
