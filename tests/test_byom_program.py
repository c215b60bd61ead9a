"""The dashboard's "Bring your own model" page with a torch.export program (Streamlit AppTest): trust,
the card form, what was inferred and checked, then a Run on the registered model."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402  (after the importorskip)
from streamlit.util import calc_hash  # noqa: E402

from dashboard.byom import card_from_form  # noqa: E402
from dsg_core.errors import ConfigError  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TINY = {"samples": "8", "iterations": "5", "seeds": "1", "compare": "false", "eval_images": "100"}


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> bytes:
    """resnet20_mnist exported with a dynamic batch: a trained BN network the page must modularize."""
    from dsg_core.models import load_model
    ep = torch.export.export(load_model("resnet20_mnist"), (torch.zeros(2, 1, 28, 28),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return buf.getvalue()


def program_page(monkeypatch, tmp_path, data: bytes, mean: str = "0.1307") -> AppTest:
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(TINY)
    at.run()
    at._page_hash = calc_hash("your-model")  # st.Page names a callable page by the hash of its URL path
    at.run()
    at.radio(key="byom_kind").set_value("A torch.export program (.pt2)").run()
    at.file_uploader(key="byom_program").set_value(("digits.pt2", data, "application/octet-stream"))
    at.text_input(key="byom_mean").set_value(mean)
    at.text_input(key="byom_std").set_value("0.3081")
    at.checkbox(key="byom_mnist").check()
    return at.run()


def test_program_needs_trust_then_shows_what_was_inferred_and_runs(program, monkeypatch, tmp_path):
    at = program_page(monkeypatch, tmp_path, program)
    assert not at.exception and any("I trust this file" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == "byom_use_program"]  # nothing loaded without trust
    at.checkbox(key="byom_trust").check().run()
    assert not at.exception, at.exception
    assert any("Program OK" in s.value and "10 classes" in s.value for s in at.success)
    text = " ".join(m.value for m in at.markdown)
    assert "inferred input shape (1, 28, 28) from the exported program" in text and "21 BatchNorm layers" in text
    at.button(key="byom_use_program").click().run()
    name = at.session_state["custom"]["model"]
    assert name.startswith("user:digits-") and at.session_state["model"] == name
    at.button(key="run").click().run()
    deadline = time.time() + 170
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception and "result" in at.session_state
    assert at.session_state["result"].plan.model == name


def test_bad_card_and_bad_program_show_one_line_errors(program, monkeypatch, tmp_path):
    at = program_page(monkeypatch, tmp_path, program, mean="0.1, 0.2")
    at.checkbox(key="byom_trust").check().run()
    errors = [e.value.replace("\\", "") for e in at.error]  # messages are escaped markdown: read them as text
    assert not at.exception and any("mean has 2 values for 1 input channels" in e for e in errors), errors
    at.file_uploader(key="byom_program").set_value(("junk.pt2", b"not a program", "application/octet-stream"))
    at.text_input(key="byom_mean").set_value("0.1307").run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert not at.exception and any("cannot load junk.pt2" in e for e in errors), errors


def test_card_form_fields_are_validated():
    card = card_from_form(shape="3, 32, 32", mean="0.5,0.5,0.5", std="0.2, 0.2, 0.2", num_classes=0,
                          class_names="cat, dog", mnist=False, image_dir=None)
    assert card.input_shape == (3, 32, 32) and card.class_names == ("cat", "dog") and card.num_classes is None
    with pytest.raises(ConfigError, match="mean: give comma-separated numbers"):
        card_from_form(shape="", mean="half", std="1", num_classes=0, class_names="", mnist=False, image_dir=None)
    with pytest.raises(ConfigError, match="input shape: give whole numbers"):
        card_from_form(shape="1, 28.5, 28", mean="0", std="1", num_classes=0, class_names="", mnist=False,
                       image_dir=None)


def test_a_background_job_finds_the_program_by_name(program, monkeypatch, tmp_path):
    """The job is another process: it loads user:<name> from the record the page wrote."""
    from dsg_core.jobs import JobStore
    at = program_page(monkeypatch, tmp_path, program)
    at.checkbox(key="byom_trust").check().run()
    at.button(key="byom_use_program").click().run()
    name = at.session_state["model"]
    at._page_hash = calc_hash("history")  # History & jobs
    at.run()
    assert not at.exception
    at.number_input(key="job_samples").set_value(8)
    next(b for b in at.button if b.label == "Start in the background").click().run()
    store = JobStore(tmp_path / "jobs")
    (job,) = store.list()
    assert name in " ".join(job.argv)
    deadline = time.time() + 150
    while store.get(job.id).status == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert store.get(job.id).status == "done", store.log_tail(job)
