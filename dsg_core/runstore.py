"""Run history: every run's config, metrics and synthetic sets, in SQLite plus a folder of files.

Crash-safe by ordering: a run's set files are written atomically into a fresh folder first, and
only then is its row committed (SQLite in WAL mode), so a process killed mid-save leaves at most an
orphan folder, never a row pointing at missing or half-written files. Each call opens its own
connection, so several sessions (threads or processes) can write at once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import provenance
from .errors import DataError
from .generation import SyntheticSet
from .sqlite_store import BUSY_TIMEOUT_S, SQLiteStore, StoreError

KEEP_DELETED = 10  # deleted runs whose files are kept for an undo

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    title TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    results TEXT NOT NULL,
    folder TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Run:
    id: int
    created: float
    model: str
    title: str
    config: dict
    metrics: dict        # set name -> {metric: value}
    results: list[dict]  # quantization rows
    folder: Path

    def metric_rows(self) -> list[dict]:
        """The stored metrics back as rows: source, seed and the metric values."""
        rows = []
        for key, values in self.metrics.items():
            source, _, seed = key.rpartition("@")
            rows.append({"source": source, "seed": int(seed), **values})
        return rows

    def load_run_set(self, source: str, seed: int) -> SyntheticSet:
        """The set a run generated for ``source`` at ``seed``."""
        return self.load_set(set_file(source, seed))

    def set_names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.safetensors"))

    def load_set(self, name: str) -> SyntheticSet:
        return SyntheticSet.load(self.folder / f"{name}.safetensors")


class RunStore(SQLiteStore):
    def __init__(self, root: str | Path, timeout: float = BUSY_TIMEOUT_S):
        super().__init__(root, "runs.sqlite", SCHEMA, timeout)

    def add(self, model: str, title: str, config: dict, metrics: dict, results: list[dict],
            sets: dict[str, SyntheticSet] | None = None) -> int:
        """Save a run (set files first, then its row); a failed insert removes the files it wrote."""
        folder = self.root / "sets" / uuid.uuid4().hex[:12]
        try:
            folder.mkdir(parents=True)
            for name, s in (sets or {}).items():
                s.save(folder / f"{_safe(name)}.safetensors")
            row = (time.time(), model, title, json.dumps(config), json.dumps(metrics, default=float),
                   json.dumps(results, default=float), str(folder.relative_to(self.root)))
            return int(self._write("INSERT INTO runs (created, model, title, config, metrics, results, folder) "
                                   "VALUES (?,?,?,?,?,?,?)", row))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # no orphan folder
            raise

    def add_safely(self, *args, retries: int = 2, wait_s: float = 1.0, **kw) -> tuple[int, "RunStore", str]:
        """``add``, retried while the store is locked; then saved to a fresh store beside it, so a
        finished run is never lost. Returns (run id, the store it is in, a message when not this one)."""
        for attempt in range(retries + 1):
            try:
                run_id = self.add(*args, **kw)
                return run_id, self, (f"{self.notice}; the run was saved in the new one as run #{run_id}"
                                      if self.notice else "")
            except StoreError as exc:
                error = exc
                if attempt < retries:
                    time.sleep(wait_s * (attempt + 1))
        fresh = RunStore(self.root / "recovered" / time.strftime("%Y%m%d-%H%M%S"), timeout=self.timeout)
        run_id = fresh.add(*args, **kw)
        return run_id, fresh, (f"the run store could not be written ({error}); this run was saved as run "
                               f"#{run_id} in a new store, {fresh.db.relative_to(self.root)} in the runs folder, "
                               "instead")

    def save_run(self, *, model: str, title: str, config: dict, metric_rows: list[dict], result_rows: list[dict],
                 sets: dict[tuple[str, int], SyntheticSet]) -> tuple[int, str]:
        """A run in the history's format (metrics keyed ``source@seed``, sets named ``source_sSEED``),
        saved even when this store is locked or damaged (``add_safely``): (run id, a message when it
        went elsewhere). The config and every result row carry the provenance stamp (the code version
        that computed them; rows that already have one keep theirs)."""
        stamp = config.get("provenance") or provenance.stamp(config.get("plan", config))
        config = {**config, "provenance": stamp}
        result_rows = [{**stamp, **r} for r in result_rows]
        metrics = {f"{r['source']}@{r['seed']}": {k: v for k, v in r.items() if k not in ("set", "source", "seed")}
                   for r in metric_rows}
        run_id, _, note = self.add_safely(model, title, config, metrics, result_rows,
                                          {set_file(src, seed): s for (src, seed), s in sets.items()})
        return run_id, note

    def update(self, run_id: int, metrics: dict | None = None, results: list[dict] | None = None) -> Run:
        """Replace a saved run's metrics and/or results (e.g. after an epsilon ablation on it)."""
        self.get(run_id)

        def write(con) -> None:
            if metrics is not None:
                con.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics, default=float), run_id))
            if results is not None:
                con.execute("UPDATE runs SET results = ? WHERE id = ?", (json.dumps(results, default=float), run_id))
        self._do(write)
        return self.get(run_id)

    def list(self, model: str | None = None) -> list[Run]:
        q, args = "SELECT * FROM runs", ()
        if model:
            q, args = q + " WHERE model = ?", (model,)
        return [self._run(r) for r in self._all(q + " ORDER BY id DESC", args)]

    def get(self, run_id: int) -> Run:
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise DataError(f"no saved run with id {run_id}")
        return self._run(row)

    def delete(self, run_id: int) -> Run:
        """Remove a run; its files go to ``trash/`` (the last few deletions) so that :meth:`restore`
        can undo it. Returns the run as it was."""
        run = self.get(run_id)
        trash = self.root / "trash"
        trash.mkdir(exist_ok=True)
        for old in sorted(trash.iterdir(), key=lambda p: p.stat().st_mtime)[:-(KEEP_DELETED - 1) or None]:
            shutil.rmtree(old, ignore_errors=True)
        if run.folder.is_dir():
            run.folder.rename(trash / run.folder.name)
        self._write("DELETE FROM runs WHERE id = ?", (run_id,))
        return run

    def restore(self, run: Run) -> Run:
        """Undo :meth:`delete`: the same id, row and files again (DataError once its files are gone)."""
        kept = self.root / "trash" / run.folder.name
        if not kept.is_dir():
            raise DataError(f"run #{run.id} can no longer be restored: its files were removed")
        kept.rename(run.folder)
        self._write("INSERT INTO runs (id, created, model, title, config, metrics, results, folder) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (run.id, run.created, run.model, run.title, json.dumps(run.config),
                     json.dumps(run.metrics, default=float), json.dumps(run.results, default=float),
                     str(run.folder.relative_to(self.root))))
        return self.get(run.id)

    def _run(self, r) -> Run:
        return Run(id=r[0], created=r[1], model=r[2], title=r[3], config=json.loads(r[4]),
                   metrics=json.loads(r[5]), results=json.loads(r[6]), folder=self.root / r[7])


def runs_dir() -> Path:
    """The history's folder: $DSG_RUNS_DIR, else runs/ in the working directory."""
    return Path(os.environ.get("DSG_RUNS_DIR") or Path.cwd() / "runs")


def set_file(source: str, seed: int) -> str:
    """The file stem of a run's set: ``dsg_s0``."""
    return f"{source}_s{seed}"


def _safe(name: str) -> str:
    """A set name as a file name ('DSG (SDA+LSE)' -> 'DSG_SDA+LSE')."""
    return "".join(c if c.isalnum() or c in "+-." else "_" for c in name).strip("_") or "set"
