"""The SQLite file under a folder that the run store and the job table share the handling of.

A store must never take the app down, nor lose a finished result: every connection waits for a
lock (``busy_timeout``) instead of failing at once; a file that is not a database, or fails SQLite's
``quick_check``, is moved aside (``<name>.damaged-<time>``, with a message in ``notice``) and a new
one started; a table whose file was deleted meanwhile is created again. What still fails (a lock
held past the timeout, a full disk) is a :class:`StoreError` with a one-line message.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from .errors import DataError

BUSY_TIMEOUT_S = 30.0
_CHECKED: set[tuple] = set()  # (file, inode, mtime, size) already quick-checked by this process


class StoreError(DataError):
    """The store cannot be read or written now (locked by another process, disk full, ...)."""


class SQLiteStore:
    """``root/filename`` in WAL mode (readers do not block the writer, so a page can read while a
    job writes), one connection per call so threads and processes can share it safely."""

    def __init__(self, root: str | Path, filename: str, schema: str, timeout: float = BUSY_TIMEOUT_S):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / filename
        self.schema, self.timeout = schema, timeout
        self.notice = ""  # set when a damaged file was moved aside: the app shows it
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._recover(exc)

    def _open(self) -> None:
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(self.schema)
            con.commit()
            st = self.db.stat()
            key = (str(self.db.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
            if key in _CHECKED:  # once per version of the file: the page opens a store on every rerun
                return           # (damage a query meets later is handled by _do)
            check = con.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            _CHECKED.add(key)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db, timeout=self.timeout)
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return con

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Locked: a StoreError. Damaged: moved aside, a new store started, ``notice`` says where."""
        if _locked(exc):
            raise StoreError(f"{self.db.name} is locked by another process (waited {self.timeout:g} s): "
                             "try again when it has finished") from None
        if isinstance(exc, sqlite3.OperationalError):  # cannot open, disk I/O, full disk: not the file's fault
            raise StoreError(f"{self.db.name}: {exc}") from None
        aside = self.db.with_name(f"{self.db.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.db}{suffix}")
            if part.exists():
                part.rename(Path(f"{aside}{suffix}"))
        self.notice = (f"{self.db.name} was damaged ({exc}); it was moved aside to {aside.name} "
                       f"and a new, empty one was started in its place")
        try:
            self._open()
        except sqlite3.DatabaseError as again:
            raise StoreError(f"cannot start a new {self.db.name}: {again}") from None

    def _do(self, work):
        """``work(con)`` in one committed transaction; a deleted table is created again and a damaged
        file replaced (then the work is tried once more); a lock past the timeout is a StoreError."""
        for attempt in (1, 2):
            try:
                with closing(self._connect()) as con, con:
                    return work(con)
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) and attempt == 1:
                    self.root.mkdir(parents=True, exist_ok=True)
                    self._open()  # the file was deleted under us: start it again
                    continue
                raise StoreError(f"{self.db.name}: {exc}" + (f" (waited {self.timeout:g} s)" if _locked(exc)
                                                              else "")) from None
            except sqlite3.DatabaseError as exc:
                if attempt == 2:
                    raise StoreError(f"{self.db.name}: {exc}") from None
                self._recover(exc)
        raise AssertionError("unreachable")

    def _one(self, sql: str, args: tuple = ()):
        """The first row of a query, or None."""
        return self._do(lambda con: con.execute(sql, args).fetchone())

    def _all(self, sql: str, args: tuple = ()) -> list:
        return self._do(lambda con: con.execute(sql, args).fetchall())

    def _write(self, sql: str, args: tuple) -> int:
        """One committed statement; returns the new row id of an INSERT."""
        return self._do(lambda con: con.execute(sql, args).lastrowid)


def _locked(exc: sqlite3.DatabaseError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
