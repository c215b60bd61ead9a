"""Provenance: which code and which settings made a result row or a synthetic set.

Tables that mix rows computed before and after a fix that changed results are wrong in a way no
reader can see, so every row and set carries a stamp of four short strings:

* ``code_version``: the git commit of the checkout (``+dirty`` when ``dsg_core``'s files differ from
  it), or ``dsg_core-<version>`` for an installed package without git;
* ``source_hash``: a hash of every ``.py`` file under ``dsg_core`` (paths sorted, contents hashed),
  the version renderers compare: two checkouts with the same engine code agree on it;
* ``config_hash``: a hash of the settings (generation config or plan) as canonical JSON;
* ``machine``: the CPU (or GPU) and torch build that computed it. The same code and seed gave 2-bit
  cells points apart in runs from different sessions (other machines), which one machine repeats
  exactly (``docs/results.md``, "Same recipe, two names"): a single cell is comparable on one machine.

The code's two and the machine are computed once per process. Rows without a stamp (older ones) count as
version :data:`UNKNOWN`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import DataError

PACKAGE = Path(__file__).resolve().parent
UNKNOWN = "unknown"
FIELDS = ("code_version", "source_hash", "config_hash", "machine")
DIGITS = 12  # hex digits kept of each hash: short enough to read, ample to tell versions apart


def digest(data: bytes) -> str:
    """A short SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()[:DIGITS]


def tree_hash(root: Path) -> str:
    """The hash of every ``.py`` file under ``root``: relative paths in sorted order, each with its
    contents, so a renamed or edited file changes it and the order files are found in does not."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:DIGITS]


@functools.cache
def source_hash() -> str:
    """:func:`tree_hash` of this ``dsg_core`` (once per process)."""
    return tree_hash(PACKAGE)


def config_hash(config: Mapping | None) -> str:
    """The hash of a config as canonical JSON (keys sorted; tuples as lists)."""
    return digest(json.dumps(config or {}, sort_keys=True, default=str).encode())


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> str:
    """The git commit (``+dirty`` when ``dsg_core`` differs from it) when this ``dsg_core`` is a tracked
    part of a checkout; else the package version (an installed copy). Once per process."""
    if _git("ls-files", "--error-unmatch", "__init__.py"):
        commit = _git("rev-parse", "HEAD")
        if commit:
            dirty = _git("status", "--porcelain", "--", ".")
            return commit[:DIGITS] + ("+dirty" if dirty else "")
    from . import __version__
    return f"dsg_core-{__version__}"


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def machine() -> str:
    """What computed a row: CPU model, architecture and torch build, plus the GPU when torch sees one
    (a stamp says where a result could come out otherwise, not which device a run chose). Once per process."""
    import torch  # here: the hashes above need no torch
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu_name()} ({platform.machine()}), torch {torch.__version__}{gpu}"


def stamp(config: Mapping | None) -> dict[str, str]:
    """The provenance fields of a row or set made now from ``config``."""
    return {"code_version": code_version(), "source_hash": source_hash(), "config_hash": config_hash(config),
            "machine": machine()}


def version_of(row: Mapping, field: str = "source_hash") -> str:
    """The code version a row was computed with, as renderers compare it: its source hash (a row
    without one, or with a table's NaN for it, is :data:`UNKNOWN`)."""
    value = row.get(field)
    return value if isinstance(value, str) and value else UNKNOWN


def versions(rows: Iterable[Mapping]) -> dict[str, list[str]]:
    """Source hash -> the code versions seen with it, for every version among ``rows`` (most rows first)."""
    rows = list(rows)
    counts = Counter(version_of(r) for r in rows)
    seen: dict[str, set[str]] = {v: set() for v in counts}
    for r in rows:
        seen[version_of(r)].add(version_of(r, "code_version"))
    return {v: sorted(seen[v]) for v, _ in counts.most_common()}


def check_versions(rows: Iterable[Mapping], *, allow_mixed: bool = False) -> list[str]:
    """Refuse rows of more than one code version (DataError), unless ``allow_mixed``: then the
    markdown lines a rendered document must carry to say so. No lines when the rows agree."""
    rows = list(rows)
    found = versions(rows)
    if len(found) <= 1:
        return []
    counts = Counter(version_of(r) for r in rows)
    listed = "; ".join(f"{v} ({counts[v]} rows, code {', '.join(codes)})" for v, codes in found.items())
    if not allow_mixed:
        raise DataError(f"the rows come from {len(found)} code versions (source hashes: {listed}); "
                        "recompute the old rows, or pass --allow-mixed to render them together")
    return [f"**Mixed code versions** (rendered with `--allow-mixed`): the rows come from {len(found)} versions "
            "of `dsg_core` (source hash, rows, code version; `unknown`: rows from before provenance was recorded):",
            "", *[f"- `{v}`: {counts[v]} rows, code {', '.join(f'`{c}`' for c in codes)}"
                  for v, codes in found.items()], ""]
