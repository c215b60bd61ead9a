"""Bring your own model in a real browser: upload a torch.export program, trust it, fill the card, use it, Run."""

from __future__ import annotations

import pytest
import torch

from dashboard import browser as b

pytestmark = pytest.mark.skipif(not b.CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
pytest.importorskip("playwright")

TINY = {"samples": 8, "iterations": 10, "seeds": 1, "compare": "false", "eval_images": 200}


def test_program_upload_then_run_in_chromium(tmp_path):
    from dsg_core.models import load_model
    ep = torch.export.export(load_model("resnet20_mnist"), (torch.zeros(2, 1, 28, 28),),
                             dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(tmp_path / "digits.pt2"))
    with b.server(tmp_path / "runs", log=tmp_path / "streamlit.log") as (url, _, _), b.browser_page() as page:
        page.goto(b.url_with(url + "your-model", TINY))
        b.wait_idle(page, 90)
        page.get_by_text("A torch.export program (.pt2)").click()
        b.wait_idle(page, 60)
        box = page.locator("[data-testid='stFileUploader']").first
        uploader = box.locator("input[type=file]")

        def upload():  # a file set while the page reruns can be dropped: set it until the uploader lists it
            for _ in range(3):
                if box.get_by_text("digits.pt2").count():
                    return
                uploader.set_input_files(str(tmp_path / "digits.pt2"))
                b.wait_idle(page, 60)
                page.wait_for_timeout(1000)
            box.get_by_text("digits.pt2").first.wait_for(timeout=30_000)
        upload()
        page.get_by_label("Mean per channel, for pixels in [0, 1]").fill("0.1307")
        page.get_by_label("Std per channel").fill("0.3081")
        page.get_by_label("Std per channel").press("Enter")
        b.wait_idle(page, 60)
        page.get_by_text("Real data: the embedded MNIST digits").click()
        b.wait_idle(page, 60)
        trust = page.locator("[data-testid='stCheckbox']", has_text="I trust this file")
        ticked = trust.locator("input")
        for _ in range(3):  # a click that lands while the page redraws can be lost: click until it holds,
            if ticked.is_checked():  # but only after giving the last click 10 s to show (a second click on
                break                # a slow rerun would untick the box again)
            trust.click()
            for _ in range(20):
                page.wait_for_timeout(500)
                if ticked.is_checked():
                    break
            b.wait_idle(page, 60)
        upload()  # still there after the other inputs' reruns (a lost upload failed this test before)
        try:
            page.get_by_text("Program OK", exact=False).first.wait_for(timeout=180_000)
        except Exception:  # keep what the page showed, for whoever reads the failure
            b.REPO.joinpath("artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(b.REPO / "artifacts" / "byom_failure.png"), full_page=True)
            raise
        page.get_by_text("inferred input shape", exact=False).first.wait_for(timeout=30_000)
        assert "(1, 28, 28)" in page.get_by_text("inferred input shape", exact=False).first.inner_text()
        using = page.get_by_text("Using your model: digits.pt2", exact=False)
        for _ in range(3):  # as with the checkbox: a click during a redraw can be lost
            if using.count():
                break
            button = page.get_by_role("button", name="Use this model")
            if button.count():
                button.click()
            b.wait_idle(page, 60)
        using.first.wait_for(timeout=30_000)
        b.press_run_and_wait(page, timeout_s=300)
        assert page.locator(b.EXCEPTION).count() == 0
        assert page.get_by_text("Using your model: digits.pt2", exact=False).count() == 1
