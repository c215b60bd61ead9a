"""The dashboard against damaged stores and hostile uploads (issue 19, items 1, 3, 5, 7, 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from conftest import zip_bytes  # noqa: E402  (tests/ is on the path: shared helper)
from streamlit.testing.v1 import AppTest  # noqa: E402
from streamlit.util import calc_hash  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ["history", "explore", "your-model", "evidence"]


def new_app(page: str) -> AppTest:
    """The app opened on a page (st.Page names a callable page by the hash of its URL path)."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at._page_hash = calc_hash(page)
    return at.run()


def test_garbage_stores_are_moved_aside_and_every_view_renders(tmp_path, monkeypatch):
    """Attack: a garbage runs.sqlite crashed every view, a garbage jobs.sqlite Background jobs."""
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    (tmp_path / "jobs").mkdir()
    (tmp_path / "runs.sqlite").write_bytes(b"not a database" * 100)
    (tmp_path / "jobs" / "jobs.sqlite").write_bytes(b"not a database" * 100)
    at = new_app("history")  # the run store is opened on every page, the jobs store on this one
    assert not at.exception, at.exception
    text = " ".join(w.value for w in at.warning)
    assert "jobs\\.sqlite was damaged" in text
    assert list(tmp_path.glob("runs.sqlite.damaged-*")), "the first page already moved the damaged run store aside"
    for page in PAGES:
        at._page_hash = calc_hash(page)
        at.run()
        assert not at.exception, (page, at.exception)
    assert list(tmp_path.glob("runs.sqlite.damaged-*")) and list((tmp_path / "jobs").glob("jobs.sqlite.damaged-*"))


def test_uploads_are_named_as_text_kept_under_the_runs_folder_and_refused_by_limits(tmp_path, monkeypatch):
    """Attacks: an uploaded file's name rendered as markdown in the "In use" box; a zip that ended in a
    FileExistsError; errors showing server paths; uploads in a fixed /tmp folder."""
    from dsg_core.models.registry import CHECKPOINT_DIR
    monkeypatch.setenv("DSG_RUNS_DIR", str(tmp_path))
    at = new_app("your-model")
    name = "![t](https://evil.example/t.png) [x](https://evil.example).safetensors"
    data = (CHECKPOINT_DIR / "resnet20_mnist.safetensors").read_bytes()
    at.file_uploader(key="byom_weights").set_value((name, data, "application/octet-stream"))
    bad_zip = zip_bytes({"0": b"x", "0/a.png": b"y"})
    at.file_uploader(key="byom_images").set_value(("imgs.zip", bad_zip, "application/zip"))
    at.run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "imgs\\.zip" in error and "both a file and a folder" in error and str(tmp_path) not in error
    assert list((tmp_path / "uploads").glob("*/*.safetensors"))
    assert not [p for p in (tmp_path / "uploads").iterdir() if p.name.startswith(".partial-")]
    at.file_uploader(key="byom_images").set_value(None)
    at.run()
    at.button(key="byom_use").click().run()
    assert not at.exception
    box = next(i.value for i in at.info if i.value.startswith("In use"))
    assert f"`{name}`" in box  # a code span: no image fetched, no link
    assert any(f"`{name}`" in c.value for c in at.sidebar.caption)
