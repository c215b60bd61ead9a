"""Drive the dashboard in a real browser: start ``streamlit run``, open Debian's chromium, wait for states.

Shared by ``tests/test_browser.py`` and ``bench/dashboard_speed.py`` so that the test and the
benchmark measure the same thing. Needs the ``playwright`` Python package and /usr/bin/chromium
(no browser download: Playwright drives the system chromium).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EXCEPTION = "[data-testid='stException']"
TABS = "[role='tab']"
NAV = "[data-testid='stSidebarNav'] a, [data-testid='stSidebarNavLink']"
CHART = ".js-plotly-plot, .vega-embed svg.marks"  # a drawn chart: Plotly's, or Vega-Lite's (SVG renderer)
SEED_DOT = ".vega-embed [aria-roledescription='circle'][aria-label*='seed']"  # a seed's dot in a seed_dots chart
ERROR_BAR = ".vega-embed [aria-roledescription='errorbar']"
# page -> its URL path; result page -> (images, charts) it shows at least, once a run is on screen
PAGES = {"Evidence": "", "More evidence": "more", "Explore a run": "explore", "Accuracy": "accuracy",
         "Generator + QAT": "qat", "Learn": "learn", "Your model": "your-model", "History & jobs": "history"}
RESULT_PAGES = {"Explore a run": (4, 2), "Accuracy": (0, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc): unlike wall time, it does not
    grow when other programs compete for the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout:.0f} s")


@contextmanager
def server(runs_dir: str | Path, port: int | None = None, log: Path | None = None):
    """A headless dashboard started as ``make run`` does (``python -m dashboard.serve``, i.e. ``streamlit
    run dashboard/app.py`` with the imports done first); yields (base URL, seconds until healthy, pid)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "dashboard.serve", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "DSG_RUNS_DIR": str(runs_dir)}
    out = open(log, "w") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}/", time.perf_counter() - t0, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()


@contextmanager
def browser_page(width: int = 1500, height: int = 1000):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def url_with(base: str, params: dict | None) -> str:
    return base + ("?" + urlencode(params) if params else "")


def wait_idle(page, timeout_s: float = 60) -> None:
    page.wait_for_selector(IDLE, timeout=timeout_s * 1000)


def press_run_and_wait(page, timeout_s: float = 300) -> float:
    """Click Run; seconds until the 'finished' notice is shown (the job's result is on screen)."""
    t0 = time.perf_counter()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("finished in", exact=False).first.wait_for(timeout=timeout_s * 1000)
    wait_idle(page, 60)
    return time.perf_counter() - t0


def open_page(page, title: str) -> None:
    """Click a page in the sidebar's navigation, as a person would, and wait for it to settle."""
    page.locator(NAV, has_text=title).first.click()
    if PAGES[title]:  # the default page (Evidence) is the bare address
        page.wait_for_url(f"**/{PAGES[title]}**", timeout=30_000)
    page.wait_for_timeout(300)
    wait_idle(page, 90)


def overflow(page) -> list[str]:
    """What sticks out of the window: the page scrolling sideways, a chart past the right edge, or a
    navigation label cut off (its text wider than its box)."""
    return page.evaluate("""() => {
        const out = [], w = window.innerWidth;
        if (document.documentElement.scrollWidth > w + 1) out.push('page ' + document.documentElement.scrollWidth);
        document.querySelectorAll('.js-plotly-plot, .vega-embed').forEach((el, i) => {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.right > w + 1) out.push('chart ' + i + ' ends at ' + Math.round(r.right));
        });
        document.querySelectorAll('[data-testid="stSidebarNav"] a span, [data-testid="stSidebarNavLink"] span')
            .forEach(el => { if (el.scrollWidth > el.clientWidth + 1) out.push('nav ' + el.textContent); });
        document.querySelectorAll('[role="tab"]').forEach(el => {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.right > w + 1) out.push('tab ' + el.textContent);
        });
        return out;
    }""")


def wait_drawn(page, images: int, charts: int, timeout_s: float = 60) -> None:
    """Wait until the open tab shows at least this many images and charts."""
    if charts:
        page.locator(f"{CHART.replace(',', ':visible,')}:visible").nth(charts - 1).wait_for(timeout=timeout_s * 1000)
    if images:
        page.locator("[data-testid='stImage'] img:visible").nth(images - 1).wait_for(timeout=timeout_s * 1000)
