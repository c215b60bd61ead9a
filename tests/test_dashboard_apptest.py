"""The dashboard through Streamlit's AppTest: every view, the URL settings, a Run, history and errors.

One app instance runs the pipeline with tiny settings (8 samples, 5 iterations, one bit-width) and the
tests after it inspect that instance, so the whole file stays well under three minutes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from dsg_core.runstore import RunStore  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TINY = {"samples": "8", "iters": "5", "compare": "false", "eval": "100"}
TABS = ["Samples", "Homogenization", "Embedding", "Diversity metrics", "Quantized accuracy",
        "Diversity vs accuracy", "Generator + QAT", "Learn", "History", "Bring your own model", "Background jobs"]


def new_app(params: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params or {})
    return at.run()


def run_and_wait(at: AppTest, timeout: float = 150, button: str = "run") -> AppTest:
    """Press a button that starts a job, then rerun the script (as the page's polling fragment
    would) until the job ends."""
    at.button(key=button).click().run()
    deadline = time.time() + timeout
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert "job" not in at.session_state, "the run did not finish in time"
    return at


def show(at: AppTest, tab: str) -> AppTest:
    """Switch tabs: only the open tab is drawn (as in the browser, where a switch reruns the app)."""
    at.session_state["view"] = tab
    return at.run()


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def ran(runs_dir):
    """One app that has completed a tiny Run (shared by the tests that inspect results)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DSG_RUNS_DIR", str(runs_dir))
    at = run_and_wait(new_app(TINY))
    yield at
    mp.undo()


def test_first_render_has_every_tab_and_no_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app()
    assert not at.exception
    assert not errors(at)
    assert [t.label for t in at.tabs] == TABS
    assert at.title[0].value == "DSG Lab"
    assert not at.button(key="run").disabled
    for tab in TABS:
        show(at, tab)
        assert not at.exception, tab
        assert not errors(at), tab
    show(at, "Learn")
    assert at.latex, "the Learn tab shows the formulas"


def test_query_params_set_the_controls(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"eps": "0.5", "sda": "false", "samples": "16", "iters": "40", "wbits": "3", "abits": "3",
                  "quantizer": "minmax", "model": "mobilenetv2_mnist", "seeds": "2"})
    assert not at.exception
    assert at.slider(key="eps").value == 0.5
    assert at.toggle(key="sda").value is False
    assert at.number_input(key="samples").value == 16
    assert at.number_input(key="iters").value == 40
    assert at.number_input(key="seeds").value == 2
    assert at.select_slider(key="wbits").value == 3
    assert at.selectbox(key="quantizer").value == "minmax"
    assert at.selectbox(key="model").value == "mobilenetv2_mnist"
    assert not at.sidebar.warning  # every parameter was taken


def test_invalid_link_parameters_are_named_in_a_warning(tmp_path, monkeypatch):
    """Streamlit drops an invalid bound value silently and shows the default: the sidebar says so."""
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"eps": "2", "wbits": "9", "model": "nope", "iters": "abc", "seeds": "2", "eval": "150",
                  "view": "Learn"})
    assert not at.exception
    assert at.slider(key="eps").value == 0.9 and at.select_slider(key="wbits").value == 4
    assert at.number_input(key="seeds").value == 2
    text = " ".join(w.value for w in at.sidebar.warning)
    for part in ("`eps=2`", "using `0.9`", "`wbits=9`", "`model=nope`", "`iters=abc`"):
        assert part in text, (part, text)
    assert "seeds" not in text and "eval" not in text and "view" not in text  # taken, or a view's own
    at.number_input(key="seeds").set_value(3).run()  # the check is of the opening link, once
    assert len(at.sidebar.warning) == 4


def test_run_fills_session_state_and_the_store(ran, runs_dir):
    assert not ran.exception
    assert not errors(ran)
    result = ran.session_state["result"]
    assert set(result.results["set"]) == {"DSG", "ZeroQ", "Gaussian", "Real"}
    assert set(result.results["bits"]) == {"W4A4"}
    assert result.run_id is not None
    runs = RunStore(runs_dir).list()
    assert [r.id for r in runs] == [result.run_id]
    assert set(runs[0].set_names()) == {"dsg_s0", "zeroq_s0", "gaussian_s0"}
    assert any("finished" in s.value for s in ran.success)


def test_every_view_renders_charts_with_data(ran):
    specs, images, tables = [], 0, 0
    for tab in TABS:
        show(ran, tab)
        assert not ran.exception, tab
        specs += plotly_specs(ran)
        images += len(ran.image)
        tables += len(ran.dataframe)
        if tab == "Samples":
            assert "%" in ran.image[0].captions[0], "captions carry the predicted class and confidence"
    titles = {s["layout"].get("title", {}).get("text", "") for s in specs}
    for expected in ("Per-sample statistics", "Pre-BN activations", "Spread of per-sample", "SDA slack band",
                     "Penultimate features", "Quantized top-1", "vs quantized top-1", "Similarity spectrum"):
        assert any(expected in t for t in titles), f"no chart titled {expected!r}: {titles}"
    assert all(s["data"] for s in specs), "every chart has traces"
    assert sum(len(s["data"][0].get("x", [])) for s in specs if s["data"]) > 0
    assert images >= 4, "the Samples view shows an image list per set"
    assert tables >= 3  # metrics, accuracy table, history list


def test_plot_selectors_do_not_regenerate(ran):
    before = ran.session_state["result"]
    show(ran, "Homogenization").selectbox(key="layer").set_value(3).run()
    show(ran, "Embedding").radio(key="color").set_value("class").run()
    assert not ran.exception
    assert ran.session_state["result"] is before


def test_changing_epsilon_reruns_generation_with_new_margins(ran, runs_dir):
    first = ran.session_state["result"]
    ran.slider(key="eps").set_value(0.5)
    run_and_wait(ran)
    second = ran.session_state["result"]
    assert second.run_id != first.run_id
    store = RunStore(runs_dir)
    d1 = store.get(first.run_id).load_set("dsg_s0").delta
    d2 = store.get(second.run_id).load_set("dsg_s0").delta
    assert d1 is not None and d2 is not None
    assert torch.all(d2 < d1), "a lower epsilon quantile gives tighter margins"
    assert store.get(second.run_id).config["eps"] == 0.5


def test_epsilon_ablation_adds_a_chart(ran):
    run_and_wait(show(ran, "Quantized accuracy"), button="ablation_run")
    assert not ran.exception
    table = ran.session_state["result"].ablation
    assert sorted(table["epsilon"]) == [0.3, 0.5, 0.7, 0.9, 1.0]
    assert any("ablation" in s["layout"].get("title", {}).get("text", "") for s in plotly_specs(ran))


def test_history_reload_and_delete(ran, runs_dir):
    store = RunStore(runs_dir)
    oldest = store.list()[-1]
    show(ran, "History")
    ran.selectbox(key="history_run").set_value(oldest.id)
    ran.button(key="history_load").click().run()
    assert not ran.exception
    assert ran.session_state["result"].run_id == oldest.id
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
    at = new_app({**TINY, "iters": "2000"})
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
    at = new_app({"view": "Bring your own model"})
    data = (CHECKPOINT_DIR / "resnet20_mnist.safetensors").read_bytes()
    at.file_uploader(key="byom_weights").set_value(("mine.safetensors", data, "application/octet-stream"))
    at.run()
    assert any("Weights OK" in s.value for s in at.success)
    at.button(key="byom_use").click().run()
    assert not at.exception
    assert at.session_state["custom"]["label"] == "mine.safetensors"
    assert any("mine.safetensors" in c.value for c in at.sidebar.caption)


def test_model_without_weights_shows_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"model": "resnet18"})
    assert not at.exception
    assert any("not available offline" in e for e in errors(at))
    assert at.button(key="run").disabled


def test_foreign_upload_shows_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"view": "Bring your own model"})
    at.file_uploader(key="byom_weights").set_value(("weights.pt", b"this is not a state dict", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("cannot read weights" in e for e in errors(at))


def test_wrong_class_count_is_explained(tmp_path, monkeypatch):
    from safetensors.torch import save
    from dsg_core.models import get_spec
    state = get_spec("resnet20_mnist").build().state_dict()
    last = [k for k in state if k.endswith(".weight") and state[k].dim() == 2][-1]
    state[last] = torch.zeros(7, state[last].shape[1])
    state[last.replace("weight", "bias")] = torch.zeros(7)
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"view": "Bring your own model"})
    at.file_uploader(key="byom_weights").set_value(("w.safetensors", save(state), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("wrong number of classes" in e for e in errors(at))


def test_background_job_started_from_the_page_survives_a_new_session(tmp_path, monkeypatch):
    """Start a job from one session; a fresh session (a refresh, another browser) sees it finish."""
    from dsg_core.jobs import JobStore
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"view": "Background jobs", "iters": "20"})
    assert not at.exception
    at.number_input(key="job_samples").set_value(8)
    next(b for b in at.button if b.label == "Start in the background").click().run()
    assert not at.exception
    store = JobStore(tmp_path / "jobs")
    (job,) = store.list()
    deadline = time.time() + 120
    while store.get(job.id).status == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(job.id).status == "done", store.log_tail(job)
    fresh = new_app({"view": "Background jobs"})
    assert not fresh.exception
    text = " ".join(m.value for m in fresh.markdown)
    assert f"#{job.id}" in text and "done" in text and "8 samples × 20 it" in text


def test_generator_qat_tab_trains_and_shows_samples_and_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app({"view": "Generator + QAT", "eval_images": "100"})
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
