"""The SQLite file under a folder that the run store and the job table share the handling of."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


class SQLiteStore:
    """``root/filename`` in WAL mode (readers do not block the writer, so a page can read while a
    job writes), one connection per call so threads and processes can share it safely."""

    def __init__(self, root: str | Path, filename: str, schema: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / filename
        with closing(self._connect()) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(schema)
            con.commit()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30)

    def _one(self, sql: str, args: tuple = ()):
        """The first row of a query, or None."""
        with closing(self._connect()) as con:
            return con.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list:
        with closing(self._connect()) as con:
            return con.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple) -> int:
        """One committed statement; returns the new row id of an INSERT."""
        with closing(self._connect()) as con, con:
            return con.execute(sql, args).lastrowid
