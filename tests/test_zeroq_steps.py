"""The replay of the full profile's 500-step sets (bench/zeroq_steps.py, docs/zeroq-steps.md): its last step
is the profile's own set, and its page is what the renderer makes of the committed rows."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import reproduce as R  # noqa: E402 - bench/ is not a package: its path goes first
import zeroq_steps as Z  # noqa: E402
from common import Rows, rows_file  # noqa: E402


@pytest.fixture(scope="module")
def steps() -> list[dict]:
    return Rows(Z.ROWS, Z.key).rows


def test_the_last_step_is_the_full_profiles_set(steps):
    """Same code version as bench/rows/full.jsonl, and at step 500 the very top-1 the profile measured on
    its cached set (a replay that generated something else would differ)."""
    full = {(r["source"], r["seed"], r["bits"], r["quantizer"]): r["top1"]
            for r in Rows(rows_file("full"), R.row_key).rows if r["kind"] == "main" and r["model"] == Z.MODEL}
    assert {r["source_hash"] for r in steps} == {r["source_hash"] for r in Rows(rows_file("full"), R.row_key).rows}
    last = [r for r in steps if r["step"] == R.PROFILES["full"]["iterations"]]
    assert {r["source"] for r in last} == set(Z.SOURCES) and len({r["seed"] for r in last}) >= 5
    for r in last:
        for bits, q in Z.CELLS:
            w, a = bits.split("/")
            assert r[f"W{w}A{a} {q}"] == full[(r["source"], r["seed"], bits, q)]


def test_page_is_the_render_of_the_rows(steps):
    page = Z.render(steps)
    assert page.splitlines()[3:] == (REPO / "docs" / "zeroq-steps.md").read_text().splitlines()[3:]
    assert "| zeroq | 0 | 99.1 -> 93.3 |" in page  # the seed table reads the rows, step 200 and 500
