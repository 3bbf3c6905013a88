"""The result store: one SQLite file (WAL mode) holding one row per finished run, keyed by run hash.

The driver is the only writer and commits every row at once, so an interrupted grid keeps
everything written so far; reporting commands may read the same file from another process.
They open it read-only (`connect` with ``readonly``), so that they never create, change or leave
anything beside it: not the file itself where there is none yet, not SQLite's ``-wal`` and
``-shm`` companions.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.errors import BenchError
from core.rows import COLUMNS, JSON_COLUMNS, ResultRow, dumps

SCHEMA_VERSION = 1
DB_NAME = "bench.sqlite3"
# Long enough for a report to finish reading while the driver commits, short enough to notice a hang.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    run_hash   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    method     TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    ipc        INTEGER,
    arch       TEXT NOT NULL,
    protocol   TEXT NOT NULL,
    budget     TEXT NOT NULL,
    seed       INTEGER NOT NULL,
    test_acc   REAL,
    config     TEXT NOT NULL,
    metrics    TEXT NOT NULL,
    error      TEXT,
    git_commit TEXT NOT NULL,
    versions   TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_status ON results (status);
CREATE INDEX IF NOT EXISTS results_dataset ON results (dataset, status);
CREATE INDEX IF NOT EXISTS results_method ON results (method, status);
"""


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """A connection to the store's file. Read-only: with no file, an empty database in memory;
    while a writer has the file open (its ``-wal`` exists), SQLite's read-only mode, which shares
    the writer's companions and creates none; otherwise the file as immutable, which needs no
    companions at all (a writer that starts meanwhile is not seen by this reader)."""
    if not readonly:
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    if not path.is_file():
        return _empty()
    live = path.with_name(path.name + "-wal").exists()
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if live else "&immutable=1")
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)


def _empty() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False)


def default_store_root() -> Path:
    """``$BENCH_STORE`` if set, else ``./bench-results``."""
    env = os.environ.get("BENCH_STORE")
    return Path(env).expanduser() if env else Path.cwd() / "bench-results"


class ResultStore:
    """Rows of :class:`ResultRow` in ``<root>/bench.sqlite3``."""

    def __init__(self, root: str | Path, readonly: bool = False):
        """``readonly``: for commands that only report; nothing is written (see `connect`)."""
        self.root = Path(root).expanduser()
        self.path = self.root / DB_NAME
        self.readonly = readonly
        self._lock = threading.Lock()
        try:
            if not readonly:
                self.root.mkdir(parents=True, exist_ok=True)
            self._conn = connect(self.path, readonly)
        except (OSError, sqlite3.Error) as exc:
            raise self._unwritable(exc) from None
        try:
            self._init_schema()
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._unwritable(exc) from None
        except BenchError:
            self._conn.close()
            raise

    def _unwritable(self, exc: BaseException) -> BenchError:
        reason = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).replace("\n", " ")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return BenchError(f"the result store {self.path} is corrupt ({reason}); restore it from a copy, or move "
                              "it aside to start a new store (its runs would then be done again)")
        if self.readonly:
            return BenchError(f"cannot read the result store at {self.path}: {reason}; check --store or BENCH_STORE")
        return BenchError(
            f"cannot write the result store at {self.root}: {reason}; "
            "set BENCH_STORE or --store to a writable directory"
        )

    def _init_schema(self) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        writes = not self.readonly or not self.path.is_file()  # an empty store in memory gets the schema
        if not self.readonly:
            # WAL lets a reader in another process see committed rows while the driver keeps writing.
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
        # Damage anywhere in the file is found now, in one line, not as a traceback in the middle of a grid.
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {verdict}")
        if not writes:
            tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "results" not in tables:  # a file that was never a store: nothing to read in it
                conn.close()
                self._conn = conn = _empty()
                writes = True
        with conn:
            if writes:
                conn.executescript(_SCHEMA)
            found = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if found is None and writes:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found is not None and found > SCHEMA_VERSION:
                raise BenchError(
                    f"the result store at {self.path} has schema version {found}, newer than this "
                    f"harness understands ({SCHEMA_VERSION}); upgrade the harness or use another --store"
                )

    def put(self, row: ResultRow) -> None:
        """Insert the row, or replace the one with the same run hash; committed before returning."""
        values = asdict(row)
        for key in JSON_COLUMNS:
            values[key] = dumps(values[key])
        values["created_at"] = row.created_at or time.time()
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._lock, self._conn:
            self._conn.execute(
                f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [values[c] for c in COLUMNS],
            )

    def done_hashes(self) -> set[str]:
        """Run hashes that finished successfully; the driver skips these on resume."""
        with self._lock:
            cur = self._conn.execute("SELECT run_hash FROM results WHERE status = 'ok'")
            return {h for (h,) in cur.fetchall()}

    def get(self, run_hash: str) -> ResultRow | None:
        """The row with this run hash, whatever its status."""
        found = self._select("WHERE run_hash = ?", [run_hash])
        return found[0] if found else None

    def rows(
        self, *, status: str | None = "ok", dataset: str | None = None, method: str | None = None
    ) -> list[ResultRow]:
        """Rows matching every filter given; ``status=None`` means any status."""
        where, args = [], []
        for column, value in (("status", status), ("dataset", dataset), ("method", method)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._select(clause, args)

    def errors(self) -> list[ResultRow]:
        """Failed runs, with their error text."""
        return self.rows(status="error")

    def _select(self, clause: str, args: list[Any]) -> list[ResultRow]:
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM results {clause} "
            "ORDER BY dataset, protocol, budget, method, arch, ipc, seed, run_hash"
        )
        with self._lock:
            fetched = self._conn.execute(sql, args).fetchall()
        out = []
        for values in fetched:
            data = dict(zip(COLUMNS, values))
            for key in JSON_COLUMNS:
                data[key] = json.loads(data[key])
            out.append(ResultRow(**data))
        return out

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
