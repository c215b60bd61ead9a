"""Background jobs: a CLI command in its own process, followed through a small SQLite table.

The dashboard starts an hour-long ``generate`` or ``compare`` here instead of in its own process, so
no page ever waits on it and a browser refresh (or a second browser) finds it again: the job's
state lives on disk, not in a session. The child process (``python -m dsg_core ... --job ID``)
writes its progress and its result into the table; ``cancel`` sets a flag that the child polls.
A job whose process died without reporting (killed, out of memory) is marked failed when read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DataError
from .limits import limits
from .progress import Progress
from .sqlite_store import SQLiteStore, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    title TEXT NOT NULL,
    argv TEXT NOT NULL,
    pid INTEGER,
    status TEXT NOT NULL,          -- running, done, failed, cancelled
    stage TEXT NOT NULL DEFAULT '',
    step INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT 'null',
    cancel INTEGER NOT NULL DEFAULT 0,
    pid_start TEXT                 -- the process's start time, so a recycled pid is not taken for it
)"""
ACTIVE = "running"


@dataclass(frozen=True)
class Job:
    id: int
    created: float
    updated: float
    title: str
    argv: list[str]
    pid: int | None
    status: str
    stage: str
    step: int
    total: int
    message: str
    result: object
    cancel_requested: bool

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def log(self) -> str:
        return f"job-{self.id}.log"


class JobStore(SQLiteStore):
    """The jobs table in ``root/jobs.sqlite`` (WAL: the UI reads while a child writes)."""

    def __init__(self, root: str | Path):
        super().__init__(root, "jobs.sqlite", SCHEMA)
        if "pid_start" not in {r[1] for r in self._all("PRAGMA table_info(jobs)")}:  # a table from before it
            try:
                self._write("ALTER TABLE jobs ADD COLUMN pid_start TEXT", ())
            except StoreError as exc:  # another process migrated it just now
                if "duplicate column" not in str(exc):
                    raise

    # -- the parent side ------------------------------------------------------------------------
    def start(self, argv: list[str], title: str) -> Job:
        """Run ``python -m dsg_core *argv --job ID --jobs-dir ROOT`` detached from this process.

        Refused before anything starts (``dsg_core.limits``): a job over ``job_steps`` samples x
        iterations, or one more than ``jobs`` running at once in this folder (the server's)."""
        lim = limits()
        steps = job_steps(argv)
        if steps > lim.job_steps:
            raise ConfigError(f"this job is {steps:,} samples x iterations; the limit per job is {lim.job_steps:,} "
                              "(DSG_LIMIT_JOB_STEPS): fewer samples or iterations, or several jobs one after another")
        self.list()  # marks jobs whose process has died, so they do not count as running
        now = time.time()

        def insert(con) -> int:
            con.execute("BEGIN IMMEDIATE")  # count and insert at once: two clicks cannot both pass
            running = con.execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (ACTIVE,)).fetchone()[0]
            if running >= lim.jobs:
                raise ConfigError(f"{running} background jobs are running, the most this server allows at once "
                                  f"(DSG_LIMIT_JOBS={lim.jobs}): wait for one to finish, or cancel one")
            return con.execute("INSERT INTO jobs (created, updated, title, argv, status) VALUES (?, ?, ?, ?, ?)",
                               (now, now, title, json.dumps(argv), ACTIVE)).lastrowid
        job_id = self._do(insert)
        try:
            with open(self.root / f"job-{job_id}.log", "wb") as log:
                proc = subprocess.Popen([sys.executable, "-m", "dsg_core", *argv, "--job", str(job_id),
                                         "--jobs-dir", str(self.root)], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except OSError as exc:
            self.finish(job_id, "failed", f"could not start the job: {exc}")
            raise DataError(f"could not start a background job: {exc}") from None
        self._write("UPDATE jobs SET pid = ?, pid_start = ? WHERE id = ?", (proc.pid, start_time(proc.pid), job_id))
        return self.get(job_id)

    def cancel(self, job_id: int) -> None:
        self._write("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))

    def list(self) -> list[Job]:
        return [self._checked(r) for r in self._all("SELECT * FROM jobs ORDER BY id DESC")]

    def get(self, job_id: int) -> Job:
        row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise DataError(f"no job {job_id} in {self.db}")
        return self._checked(row)

    def log_tail(self, job: Job, lines: int = 20) -> str:
        path = self.root / job.log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- the child side -------------------------------------------------------------------------
    def report(self, job_id: int, p: Progress) -> None:
        self._write("UPDATE jobs SET stage = ?, step = ?, total = ?, updated = ? WHERE id = ?",
                    (p.stage, p.step, p.total, time.time(), job_id))

    def finish(self, job_id: int, status: str, message: str = "", result: object = None) -> None:
        self._write("UPDATE jobs SET status = ?, message = ?, result = ?, updated = ? WHERE id = ?",
                    (status, message, json.dumps(result, default=float), time.time(), job_id))

    def cancel_requested(self, job_id: int) -> bool:
        row = self._one("SELECT cancel FROM jobs WHERE id = ?", (job_id,))
        return bool(row and row[0])

    def reporter(self, job_id: int, every_s: float = 0.5):
        """(progress, cancel) callbacks for the engine, throttled so the table sees a few writes a second."""
        last = {"report": 0.0, "poll": 0.0, "cancel": False}

        def progress(p: Progress) -> None:
            now = time.monotonic()
            if now - last["report"] >= every_s or p.step == p.total:
                last["report"] = now
                self.report(job_id, p)

        def cancel() -> bool:
            now = time.monotonic()
            if now - last["poll"] >= every_s:
                last["poll"] = now
                last["cancel"] = self.cancel_requested(job_id)
            return last["cancel"]

        return progress, cancel

    # -- reading ---------------------------------------------------------------------------------
    def _checked(self, row) -> Job:
        job = Job(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], row[8], row[9],
                  row[10], json.loads(row[11]), bool(row[12]))
        if job.status == ACTIVE and job.pid and not _alive(job.pid, row[13]):
            # re-read: the child may have finished between the two reads
            self._write("UPDATE jobs SET status = 'failed', message = ? WHERE id = ? AND status = ?",
                        ("the process ended without reporting a result (killed or out of memory); see its log",
                         job.id, ACTIVE))
            return self._checked(self._one("SELECT * FROM jobs WHERE id = ?", (job.id,)))
        return job


def job_steps(argv: list[str]) -> int:
    """Samples x iterations of a generation command (the CLI's defaults where not given); 0 for others."""
    from .generation import GenerationConfig
    if not argv or argv[0] not in ("generate", "compare"):
        return 0
    d = GenerationConfig()
    values = {"--samples": d.samples, "--iterations": d.iterations}
    for flag, value in zip(argv, argv[1:]):
        if flag in values:
            try:
                values[flag] = int(value)
            except ValueError:
                raise ConfigError(f"{flag} must be a whole number, not {value!r}") from None
    return values["--samples"] * values["--iterations"]


def start_time(pid: int) -> str | None:
    """When the process started (Linux: clock ticks since boot, /proc/PID/stat field 22), or None
    where that cannot be read. A pid is reused once its process ends; the start time is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "pid (comm)" start at field 3


def _alive(pid: int, started: str | None = None) -> bool:
    """True while the process runs (a finished child of this process is reaped, not a zombie) and,
    where its start time was recorded, is still the process that was started (not a reused pid)."""
    if started is not None and start_time(pid) not in (None, started):
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:  # not our child: ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
