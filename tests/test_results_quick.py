"""The committed quick- and full-profile reruns: their pages and the table of moved cells in docs/results.md come
from the committed rows (bench/rows/quick.jsonl, full.jsonl), each computed on one code version (issue 18, item 2)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import archived as A  # noqa: E402 - bench/ is not a package: its path goes first
import reproduce as R  # noqa: E402
from common import Rows, rows_file  # noqa: E402

RESULTS = REPO / "docs" / "results.md"


def committed(profile: str) -> list[dict]:
    """The profile's committed rows, read as the benchmark reads them."""
    return Rows(rows_file(profile), R.row_key).rows


def test_quick_rows_share_one_code_version_and_cover_both_models():
    rows = committed("quick")
    assert {r["source_hash"] for r in rows} == {"91c7dc37b7bb"}
    assert {r["model"] for r in rows} == set(R.PROFILES["quick"]["models"])


FULL_NOT_RUN = ("sources `zeroq+priors`, `sda`, `lse`, `sci`, `sda+lse`, `sda+lse+sci`, `dsg-reference`; "
                "widths `8/8`, `6/6`, `2/4`; the epsilon ablation")  # the headline cells ran (docs/results.md)


@pytest.mark.parametrize("profile, missing", [("quick", None), ("full", FULL_NOT_RUN)])
def test_page_is_the_render_of_the_rows_and_says_what_has_not_run(profile, missing):
    """Everything below the header (date, machine) is what the renderer makes of the committed rows,
    which come from one code version (the renderer refuses a mix)."""
    page = R.render(committed(profile), profile, R.PROFILES[profile])
    assert page.splitlines()[3:] == (REPO / "docs" / f"results-{profile}.md").read_text().splitlines()[3:]
    assert (f"**Not run yet on this code:** {missing}" in page) if missing else ("Not run yet" not in page)


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


def test_results_md_quotes_the_full_profiles_reconstruction_cells_as_rendered():
    """docs/results.md's table of reconstruction at 300 steps against 100 is `archived.py --against`'s
    output for the committed rows, line for line."""
    table = A.against(rows_file("full"), rows_file("quick"), ["adaround", "brecq"])
    text = RESULTS.read_text()
    assert len(table) == 2 + 8 and all(line in text.splitlines() for line in table)


def test_results_md_quotes_the_500_step_controls_machine_check_as_rendered():
    """docs/results.md's table of the 500-step control against the full profile (another machine's draw of the
    same sets) is `archived.py --against`'s output, line for line, and no cell moved beyond the seeds' spread."""
    table = A.against(rows_file("control-full"), rows_file("full"), ["minmax", "dsg-avg"])
    lines = [line.strip() for line in RESULTS.read_text().splitlines()]
    assert len(table) == 2 + 8 and all(line in lines for line in table)
    assert not any("**" in line for line in table[2:])
