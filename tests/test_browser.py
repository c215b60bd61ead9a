"""The dashboard in a real browser: Playwright drives Debian's chromium against ``streamlit run``.

Loads the app, runs the pipeline end to end with tiny settings passed in the URL, waits for it to
finish, and checks that images and Plotly charts rendered in their tabs and that no exception box
is on the page. Screenshots go to artifacts/screenshots/ (one is copied to docs/screenshot.png).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard import browser as b

pytestmark = pytest.mark.skipif(not b.CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
pytest.importorskip("playwright")

SHOTS = b.REPO / "artifacts" / "screenshots"
TINY = {"samples": 8, "iters": 10, "compare": "false", "eval": 200}
EXPECTED = {**b.RESULT_TABS, "Learn": (0, 0), "History": (0, 0)}  # tab -> (min images, min charts)


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_run_end_to_end_in_chromium(tmp_path):
    with b.server(tmp_path / "runs", log=tmp_path / "streamlit.log") as (url, _, _), b.browser_page() as page:
        page.goto(b.url_with(url, TINY))
        b.wait_idle(page, 90)
        assert page.locator(b.EXCEPTION).count() == 0
        shot(page, "00_first_page")
        b.press_run_and_wait(page, timeout_s=240)
        for i, (tab, (images, charts)) in enumerate(EXPECTED.items(), 1):
            b.open_tab(page, tab)
            b.wait_drawn(page, images, charts)
            assert page.locator("[data-testid='stImage'] img:visible").count() >= images, tab
            assert page.locator(".js-plotly-plot:visible").count() >= charts, tab
            assert page.locator(b.EXCEPTION).count() == 0, f"exception shown in {tab}"
            path = shot(page, f"{i:02d}_{tab.lower().replace(' ', '_')}")
            if tab == "Homogenization":
                shutil.copy(path, b.REPO / "docs" / "screenshot.png")
        assert "view=History" in page.url, "the open tab is mirrored in the URL"


def test_two_sessions_at_once_get_their_own_results(tmp_path):
    """Two browser sessions with different settings press Run together; each sees its own run."""
    import re

    from dsg_core.runstore import RunStore
    with b.server(tmp_path / "runs") as (url, _, _), b.browser_page() as page_a:
        page_b = page_a.context.browser.new_page(viewport={"width": 1500, "height": 1000})
        settings = {page_a: {**TINY, "seed": 1}, page_b: {**TINY, "seed": 2, "samples": 12}}
        for page, params in settings.items():
            page.goto(b.url_with(url, params))
            b.wait_idle(page, 90)
        for page in settings:  # start both before waiting for either
            page.get_by_role("button", name="Run", exact=True).click()
        run_ids = {}
        for page in settings:
            notice = page.get_by_text("finished in", exact=False).first
            notice.wait_for(timeout=300_000)
            run_ids[page] = int(re.search(r"Run #(\d+)", notice.inner_text()).group(1))
            assert page.locator(b.EXCEPTION).count() == 0
        assert run_ids[page_a] != run_ids[page_b]
        store = RunStore(tmp_path / "runs")
        for page, params in settings.items():
            config = store.get(run_ids[page]).config
            assert (config["seed"], config["samples"]) == (params["seed"], params["samples"])
