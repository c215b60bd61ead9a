"""Shared bits of the benchmarks: machine description and writing results into docs/."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parent.parent / "docs"


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


def header(title: str, timing: bool = True) -> str:
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    note = ("Numbers are medians of repeats measured side by side in one run; these machines are noisy, "
            "so read the ratios, not the absolute times.\n") if timing else ""
    return f"# {title}\n\nProduced by `{cmd}` on {_dt.date.today()} ({machine()}).\n" + note


def write_doc(name: str, text: str) -> Path:
    DOCS.mkdir(exist_ok=True)
    path = DOCS / name
    path.write_text(text)
    print(f"wrote {path}")
    return path
