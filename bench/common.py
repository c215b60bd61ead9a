"""Shared bits of the benchmarks: machine description and writing results into docs/."""

from __future__ import annotations

import datetime as _dt
import gzip
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Hashable

import torch

from dsg_core import provenance

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Result rows are committed (bench/rows/<name>.jsonl): a page is re-rendered and a long rerun resumed
# from them on any clone. Generated sets stay in the ignored bench/cache/: they are remade from their seeds.
ROWS = Path(__file__).resolve().parent / "rows"


def machine() -> str:
    """The machine a page was made on: the rows' own stamp (``provenance.machine``) plus cores and threads."""
    return (f"{provenance.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}")


def header(title: str, timing: bool = True) -> str:
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(DOCS.parent):  # the command as typed at the repository root
        script = script.relative_to(DOCS.parent)
    cmd = "python " + " ".join([script.as_posix()] + sys.argv[1:])
    note = ("Numbers are medians of repeats measured side by side in one run; these machines are noisy, "
            "so read the ratios, not the absolute times.\n") if timing else ""
    return f"# {title}\n\nProduced by `{cmd}` on {_dt.date.today()} ({machine()}).\n" + note


def timed_cli(*args: str, env: dict[str, str] | None = None) -> tuple[dict, float]:
    """(the JSON that ``python -m dsg_core ARGS --json`` prints, wall seconds of the fresh process):
    what a user waits for, imports and all. ``env``: variables to set for the run (e.g. DSG_CACHE)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dsg_core", *args, "--json"], check=True, capture_output=True,
                         text=True, env={**os.environ, **(env or {})}).stdout
    return json.loads(out), time.perf_counter() - t


def register_models(module: str | None) -> None:
    """Add the models a bench module registers (``bench/unseen_model.py``: the held-out model) to the
    registry; None adds nothing, and registering again is harmless."""
    if module:
        importlib.import_module(module).register()


def write_doc(name: str, text: str) -> Path:
    path = DOCS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return path


def write_bundle(path: Path, data: dict) -> None:
    """The evidence bundle as compact gzipped JSON, byte-stable (no timestamp in the gzip header)."""
    path.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))


def patch_bundle(path: Path, key: str, part: dict) -> None:
    """Put one benchmark's ``part`` under ``key`` in an evidence bundle in place (the rest of it as it was):
    a part renders from its own committed rows, so it can be refreshed without the control's."""
    d = json.loads(gzip.decompress(path.read_bytes()))
    d[key] = part
    write_bundle(path, d)
    print(f"wrote {path} ({key})")


def rows_file(name: str) -> Path:
    """The committed rows of one benchmark or profile, e.g. ``rows_file("quick")``."""
    return ROWS / f"{name}.jsonl"


class Rows:
    """Append-only JSONL of finished results, keyed by ``key(row)``: a benchmark skips what ``has``
    and can be stopped and restarted any time. One write of one line in append mode, so several
    processes (e.g. different seeds) can share the file, and each sees the others' rows."""

    def __init__(self, path: Path, key: Callable[[dict], Hashable]):
        self.path, self.key = path, key
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        self.keys: set = set()
        self._offset = 0  # bytes of the file already read
        self.refresh()

    def refresh(self) -> None:
        """Take in the rows appended since the last look, by this or another process (whole lines
        only: a line another process is still writing is read next time)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                row = json.loads(line)
                self.rows.append(row)
                self.keys.add(self.key(row))
        self._offset += end

    def has(self, **k) -> bool:
        self.refresh()
        return self.key(k) in self.keys

    def add(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.refresh()
