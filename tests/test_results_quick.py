"""The committed quick- and full-profile reruns: their pages and the table of moved cells in docs/results.md come
from the committed rows (bench/rows/quick.jsonl, full.jsonl), each computed on one code version (issue 18, item 2)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import archived as A  # noqa: E402 - bench/ is not a package: its path goes first
import reproduce as R  # noqa: E402
from common import rows_file  # noqa: E402

PAGE = REPO / "docs" / "results-quick.md"
RESULTS = REPO / "docs" / "results.md"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in rows_file("quick").read_text().splitlines() if line.strip()]


def test_rows_share_one_code_version_and_cover_both_models(rows):
    assert {r["source_hash"] for r in rows} == {"91c7dc37b7bb"}
    assert {r["model"] for r in rows} == set(R.PROFILES["quick"]["models"])


def test_page_is_the_render_of_the_rows(rows):
    """Everything below the header (date, machine) is what the renderer makes of the committed rows."""
    page = R.render(rows, "quick", R.PROFILES["quick"])
    assert page.splitlines()[3:] == PAGE.read_text().splitlines()[3:]
    assert "Not run yet" not in page


def test_the_full_profiles_page_is_the_render_of_its_rows_and_says_what_has_not_run():
    rows = [json.loads(line) for line in rows_file("full").read_text().splitlines() if line.strip()]
    assert len({r["source_hash"] for r in rows}) == 1
    page = R.render(rows, "full", R.PROFILES["full"])
    assert page.splitlines()[3:] == (REPO / "docs" / "results-full.md").read_text().splitlines()[3:]
    assert "**Not run yet on this code:** quantizers `adaround`, `brecq`" in page


def test_results_md_lists_exactly_the_cells_the_rerun_moved():
    _, out = A.moved(A.archived_cells(REPO / "docs" / "results-quick-2026-11-26.md"), A.rerun_cells(rows_file("quick")))
    text = RESULTS.read_text()
    table = text[text.index("**Where the rerun moved a cell**"):text.index("- **ZeroQ as published no longer")]
    listed = [line for line in table.splitlines() if line.startswith("| ") and "_mnist" in line]
    assert len(listed) == len(out) > 0
    for _, r in out.iterrows():
        cells = f"| {r.model} | {r.quantizer} | {r.source} | W{r.bits.replace('/', 'A')} | "
        assert any(line.startswith(cells) and f"{r['mean rerun']:.1f} ± {r['std rerun']:.1f} ({r.n})" in line
                   for line in listed), cells
