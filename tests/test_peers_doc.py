"""bench/peers.py's tables: every reconstruction cell names its steps, and rows of different steps are
never pooled (runs before --recon-iters used the engine's 200; the control's protocol is 100).
Runs without MCT: only the rendering is used."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import peers as P  # noqa: E402 - bench/ is not a package: its path goes first


def top1(source: str, quantizer: str, steps: int | None, value: float) -> list[dict]:
    return [dict(kind="top1", model="m", samples=64, iterations=200, source=source, seed=s, bits="3/3",
                 quantizer=quantizer, recon_iters=steps, top1=value + s, fp32_top1=99.0, jitter_mean=value,
                 jitter={"0.8": value, "1": value, "1.2": value}) for s in (0, 1)]


def test_reconstruction_steps_are_part_of_a_rows_key_and_of_its_column():
    rows = top1("mct", "adaround", 200, 98.0) + top1("mct", "adaround", 100, 90.0) + top1("mct", "minmax", None, 80.0)
    assert len({P.key_of(r) for r in rows}) == 6
    assert P.steps("adaround", 100) == 100 and P.steps("minmax", 100) is None
    page = "\n".join(P.quality_tables(pd.DataFrame(rows)))
    assert "| set | W3A3 minmax | W3A3 adaround (100 steps) | W3A3 adaround (200 steps) |" in page
    assert "| MCT, default pipeline | 80.5 ± 0.7 (80.0) n=2 | 90.5 ± 0.7 (90.0) n=2 | 98.5 ± 0.7 (98.0) n=2 |" in page
