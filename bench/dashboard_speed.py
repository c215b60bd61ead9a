"""Dashboard speed in a real browser: (a) server up -> first page interactive, (b) Run -> all views filled.

    OMP_NUM_THREADS=1 python bench/dashboard_speed.py            # default settings, writes docs/dashboard-speed.md
    python bench/dashboard_speed.py --params samples=8 iterations=5    # other settings (not written to docs)
    python bench/dashboard_speed.py --first-page 4    # only the first page, 4 loads in fresh tabs (printed)

(a) starts ``streamlit run`` and measures both the seconds until its health check answers and from
then until the page's script has finished (``data-test-script-state=notRunning``).
(b) presses Run on the settings in the URL (the defaults unless --params) and stops the clock when
the run's notice is shown and every result tab has drawn its charts and images. Runs are stored in a
temporary folder, so the set cache is cold: generation really runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import browser as b  # noqa: E402
from dashboard.state import DEFAULTS  # noqa: E402

TARGETS = {"first page": 5.0, "default run": 60.0}


def fill_views(page) -> None:
    """Open every result page and wait until its charts and images are drawn."""
    for title, (images, charts) in b.RESULT_PAGES.items():
        b.open_page(page, title)
        b.wait_drawn(page, images, charts)
        if page.locator(b.EXCEPTION).count():
            raise RuntimeError(f"an exception is shown on the {title} page")


def screenshots(page, shots: Path) -> None:
    """Every page, full length, into docs/screenshots/ (what a reader of the docs sees of the app)."""
    shots.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 7600})  # the app scrolls inside its own pane: a tall window
    for i, title in enumerate(b.PAGES):
        b.open_page(page, title)
        page.wait_for_timeout(1500)  # let Plotly finish drawing
        page.screenshot(path=str(shots / f"{i:02d}_{b.PAGES[title] or 'evidence'}.png"))


def first_page(loads: int) -> list[tuple[float, float, int]]:
    """(seconds to the fifth chart, as ``measure`` times the first page; seconds to the last chart; charts) for
    each load of the first page in a fresh tab of one server: a change to that page, compared before and after
    on one machine."""
    out = []
    with tempfile.TemporaryDirectory() as runs, b.server(runs) as (url, _, _):
        for _ in range(loads):
            with b.browser_page() as page:
                t0 = time.perf_counter()
                page.goto(url)
                b.wait_idle(page, 120)
                page.locator(b.CHART).nth(4).wait_for(timeout=120_000)
                fifth = time.perf_counter() - t0
                n = page.locator(b.CHART).count()
                page.locator(b.CHART).nth(n - 1).wait_for(timeout=120_000)
                out.append((fifth, time.perf_counter() - t0, n))
    return out


def measure(params: dict, shots: Path) -> dict:
    with tempfile.TemporaryDirectory() as runs, b.server(runs) as (url, healthy_s, pid), b.browser_page() as page:
        t0, c0 = time.perf_counter(), b.cpu_seconds(pid)
        page.goto(b.url_with(url, params))
        b.wait_idle(page, 120)
        page.locator(b.CHART).nth(4).wait_for(timeout=120_000)  # the evidence charts are drawn
        first_page, first_cpu = time.perf_counter() - t0, b.cpu_seconds(pid) - c0
        page.wait_for_timeout(10_000)  # a user reads the page first; real images load in the background
        t1, c1 = time.perf_counter(), b.cpu_seconds(pid)
        b.press_run_and_wait(page, timeout_s=900)
        notice = time.perf_counter() - t1
        text = page.get_by_text("finished in", exact=False).first.inner_text()
        fill_views(page)
        filled, run_cpu = time.perf_counter() - t1, b.cpu_seconds(pid) - c1
        screenshots(page, shots)
    return {"server healthy": healthy_s, "first page": first_page, "run notice": notice, "default run": filled,
            "notice": text, "first page cpu": first_cpu, "default run cpu": run_cpu}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the start, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def report(res: dict, cmd: str, where: str, params: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in {**DEFAULTS, **params}.items() if k != "model")
    rows = "\n".join(f"| {k} | {res[k]:.1f} s | {_cpu(res, k)} | {('≤ %.0f s' % TARGETS[k]) if k in TARGETS else ''} |"
                     for k in ("server healthy", "first page", "run notice", "default run"))
    return f"""# Dashboard speed

Measured in a real browser (Playwright + Debian chromium, headless) by `bench/dashboard_speed.py`.

- Command: `{cmd}`
- Date: {dt.datetime.now():%Y-%m-%d %H:%M}
- Machine: {where}
- Settings: {settings}
- App's own notice: "{res['notice']}"

| step | wall seconds | server CPU seconds | target |
|---|---|---|---|
{rows}

*server CPU seconds*: CPU time the streamlit process used in that step (all its threads). It is less
sensitive to other programs than wall time but not immune on a shared VM (cache and hyper-thread
contention inflate it). On two idle cores the Run's two worker threads make the wall time lower than
the CPU time.
*server healthy*: `streamlit run` start -> `/_stcore/health` answers. *first page*: page opened -> the
Evidence page has drawn its charts (from the committed bundle, no Run). *run notice*: Run pressed ->
"finished" notice. *default run*: Run pressed -> the run's pages (Explore a run, Accuracy) have drawn
their charts and images (DSG, ZeroQ and Gaussian for every seed, plus real images; diagnostics;
quantization with range jitter; evaluation). The defaults live in `dashboard/state.py` (`DEFAULTS`);
why they are what they are is in docs/live-defaults.md. Screenshots of every page: docs/screenshots/.
"""


def _cpu(res: dict, key: str) -> str:
    return f"{res[key + ' cpu']:.1f} s" if key + " cpu" in res else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", nargs="*", default=[], help="URL settings, e.g. samples=8 iterations=5")
    ap.add_argument("--out", default=str(b.REPO / "docs" / "dashboard-speed.md"))
    ap.add_argument("--first-page", type=int, default=0, metavar="LOADS",
                    help="only time the first page over this many loads (no Run; nothing written)")
    args = ap.parse_args()
    if args.first_page:
        for fifth, last, n in first_page(args.first_page):
            print(f"first page: {fifth:.2f} s to the fifth chart, {last:.2f} s to the last of {n}")
        return
    params = dict(p.split("=", 1) for p in args.params)
    where = machine()  # load average before we add our own
    res = measure(params, b.REPO / "docs" / "screenshots" if not params else b.REPO / "artifacts" / "screenshots")
    for k in ("server healthy", "first page", "run notice", "default run"):
        print(f"{k:>15}: {res[k]:6.1f} s wall {_cpu(res, k)}")
    if not params:
        cmd = "OMP_NUM_THREADS=1 python bench/dashboard_speed.py" if os.environ.get("OMP_NUM_THREADS") == "1" \
            else "python bench/dashboard_speed.py"
        Path(args.out).write_text(report(res, cmd, where, params))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
