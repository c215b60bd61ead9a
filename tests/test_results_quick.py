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


FULL_NOT_RUN = ("sources `zeroq+priors`, `sda+lse+sci`, `dsg-reference`; widths `8/8`, `6/6`, `2/4`; "
                "the epsilon ablation's seeds 5-9 on `resnet20_mnist`; the epsilon ablation's seeds 5-9 on "
                "`mobilenetv2_mnist`")  # the headline cells, DSG's parts and half the ablation ran (docs/results.md)


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
    table = A.against(rows_file("control-full"), rows_file("full"), ["minmax", "dsg-avg"],
                      ["gaussian", "zeroq", "dsg", "real"])
    lines = [line.strip() for line in RESULTS.read_text().splitlines()]
    assert len(table) == 2 + 8 and all(line in lines for line in table)
    assert not any("**" in line for line in table[2:])


def summary_of(page: str, model: str) -> dict[tuple[str, str], str]:
    """(source, pixels) -> the "mean of cells" mean of a control page's summary table for one model."""
    text = page[page.index(f"## Every source at a glance: range rules ({model}"):]
    text = text[:text.index("\n## ", 5)]
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "±" in line]
    return {(r[0][2:], r[1]): r[-1].split(" ±")[0] for r in rows}


def test_results_md_quotes_the_500_step_ablation_as_rendered():
    """docs/results.md's table of DSG's parts at 500 steps: each value is the 500-step control page's mean of cells,
    and each bracket the 200-step value of the table above it in docs/results.md."""
    text = RESULTS.read_text()
    page = (REPO / "docs" / "pixel-range-full.md").read_text()
    table = text[text.index("| source | resnet20: as generated | clamped after | mobilenetv2: as generated"):]
    table = [line.strip().split(" | ") for line in table.split("\n\n")[0].splitlines()[2:]]
    earlier = text[text.index("| source | resnet20: as generated | clamped after | clipped |"):].split("\n\n")[0]
    earlier = {line.split(" | ")[0]: line.split(" | ") for line in earlier.splitlines()[2:]}
    names = {"ZeroQ": "zeroq", "SDA": "sda", "LSE": "lse", "SCI": "sci", "SDA+LSE": "sda+lse", "DSG": "dsg",
             "Gaussian": "gaussian", "Real": "real"}
    summaries = {model: summary_of(page, model) for model in ("resnet20_mnist", "mobilenetv2_mnist")}
    assert [r[0][2:] for r in table] == list(names)
    for row in table:
        name = row[0][2:]
        for i, (model, pixels, before) in enumerate((("resnet20_mnist", "as generated", 1),
                                                     ("resnet20_mnist", "clamped after", 2),
                                                     ("mobilenetv2_mnist", "as generated", 4),
                                                     ("mobilenetv2_mnist", "clamped after", 5))):
            cell = row[1 + i].strip(" |")
            if cell == "-":
                assert (names[name], pixels) not in summaries[model]
                continue
            now, then = cell.split(" (")
            assert now == summaries[model][(names[name], pixels)], (name, model, pixels)
            assert then.rstrip(")") == earlier[f"| {name}"][before].strip(" |"), (name, model, pixels)


def test_results_md_quotes_the_500_step_epsilon_ablation_as_rendered():
    """Each value of docs/results.md's 500-step epsilon table is the full profile page's, with the page's n."""
    text = RESULTS.read_text()
    page = (REPO / "docs" / "results-full.md").read_text()
    table = text[text.index("| epsilon (500 steps, n=5) |"):].split("\n\n")[0].splitlines()
    epsilons = table[0].strip(" |").split(" | ")[1:]
    for line in table[2:]:
        model, *values = line.strip(" |").split(" | ")
        for eps, value in zip(epsilons, values, strict=True):
            row = [r for r in page.splitlines() if r.startswith(f"| {model} | {eps} | ")]
            assert len(row) == 1 and row[0].startswith(f"| {model} | {eps} | {value} [") \
                and row[0].endswith("(n=5) |"), (model, eps)
