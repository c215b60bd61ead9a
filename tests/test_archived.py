"""bench/archived.py: an archived reproduction page's tables read back, and the cells a rerun moved."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import archived as A  # noqa: E402 - bench/ is not a package: its path goes first

PAGE = """# Reproduction table (quick profile) (archived, older code)

## resnet20_mnist (FP32 99.20%)

### quantizer `minmax`

| source | n | W4A4 | W3A3 |
|---|---|---|---|
| zeroq | 10 | 98.7 ± 0.1 [98.5, 98.9] | 52.8 ± 35.6 [9.2, 84.6] (n=5) |
| dsg | 5 | 83.4 ± 9.8 [70.1, 98.9] | - |

## Epsilon ablation (dsg, W4A4, minmax)

| model | epsilon | top-1 |
|---|---|---|
| resnet20_mnist | 0.5 | 80.0 ± 1.0 [79.0, 81.0] |
"""


def test_archived_tables_are_read_cell_by_cell_and_other_tables_ignored(tmp_path):
    page = tmp_path / "old.md"
    page.write_text(PAGE)
    cells = A.archived_cells(page)
    assert cells[["source", "bits", "mean", "std"]].values.tolist() == [
        ["zeroq", "4/4", 98.7, 0.1], ["zeroq", "3/3", 52.8, 35.6], ["dsg", "4/4", 83.4, 9.8]]
    assert set(cells.model) == {"resnet20_mnist"} and set(cells.quantizer) == {"minmax"}


def test_a_cell_moved_only_beyond_the_larger_seed_spread_and_one_point():
    old = pd.DataFrame([dict(model="m", quantizer="q", source=s, bits="4/4", mean=mu, std=sd)
                        for s, mu, sd in (("a", 90.0, 0.1), ("b", 50.0, 30.0), ("c", 90.0, 0.1))])
    new = pd.DataFrame([dict(model="m", quantizer="q", source=s, bits="4/4", mean=mu, std=sd, n=5)
                        for s, mu, sd in (("a", 95.0, 0.2), ("b", 70.0, 1.0), ("c", 90.8, 0.1))])
    both, out = A.moved(old, new)
    assert len(both) == 3 and out.source.tolist() == ["a"]  # b within its old spread, c under a point


def test_against_shows_the_sources_asked_for_and_names_an_unknown_one(monkeypatch, capsys):
    """--sources keeps a two-profile table to some columns; a name that is no source is refused, not an empty table."""
    import pytest
    from common import rows_file

    table = A.against(rows_file("control-full"), rows_file("full"), ["minmax"], ["zeroq"])
    assert table[0] == "| model, cell | zeroq |" and len(table) == 2 + 4  # two models, W4A4 and W3A3
    monkeypatch.setattr(sys, "argv", ["archived.py", "--profile", "control-full", "--against", "full",
                                      "--sources", "zeroq,nope"])
    with pytest.raises(SystemExit, match="not a source of the reproduction: nope"):
        A.main()
