"""Run leases: two `bench run` on one store never do the same run while both live.

A driver claims the runs it is about to do in the store's SQLite file (table ``leases``: run
hash, owner, host, pid, heartbeat) and refreshes its claims every `HEARTBEAT_S` seconds from a
background thread. A claim is someone else's until its owner releases it (the run's row is
written, or the grid ends) or it goes stale: no heartbeat for `LEASE_TTL_S` seconds (a killed
driver on another machine), or its owner's process is gone (a killed driver on this machine).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.store.results import BUSY_TIMEOUT_S

LEASE_TTL_S = 60.0
HEARTBEAT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    run_hash  TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    host      TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    heartbeat REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Claim:
    """What a `RunLeases.claim` got: the runs now ours, and the others' holders (host:pid)."""

    ours: list[str]
    held: dict[str, str]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunLeases:
    """This driver's claims on runs of one store file."""

    def __init__(self, db_path: str | Path, ttl_s: float = LEASE_TTL_S, heartbeat_s: float = HEARTBEAT_S):
        self.ttl_s, self.heartbeat_s = ttl_s, heartbeat_s
        self.owner, self.host, self.pid = uuid.uuid4().hex, socket.gethostname(), os.getpid()
        self._conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                                     isolation_level=None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        with self._lock:
            self._conn.execute(_SCHEMA)

    def _expire(self, now: float) -> None:
        self._conn.execute("DELETE FROM leases WHERE heartbeat < ?", (now - self.ttl_s,))
        gone = [(o,) for o, pid in self._conn.execute("SELECT DISTINCT owner, pid FROM leases WHERE host = ?",
                                                      (self.host,)).fetchall() if not _alive(pid)]
        self._conn.executemany("DELETE FROM leases WHERE owner = ?", gone)

    def claim(self, run_hashes: Iterable[str]) -> Claim:
        """Claim every run no live driver holds; returns ours and who holds the rest."""
        wanted = list(dict.fromkeys(run_hashes))
        now = time.time()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # one claimant at a time
            try:
                self._expire(now)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO leases (run_hash, owner, host, pid, heartbeat) VALUES (?, ?, ?, ?, ?)",
                    [(h, self.owner, self.host, self.pid, now) for h in wanted])
                holders: dict[str, tuple[str, str]] = {}  # run hash -> (owner, host:pid)
                for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
                    part = wanted[start:start + 500]
                    for run_hash, owner, host, pid in self._conn.execute(
                            f"SELECT run_hash, owner, host, pid FROM leases WHERE run_hash IN "
                            f"({', '.join('?' for _ in part)})", part):
                        holders[run_hash] = (owner, f"{host}:{pid}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        ours = [h for h in wanted if holders[h][0] == self.owner]
        return Claim(ours, {h: holders[h][1] for h in wanted if holders[h][0] != self.owner})

    def release(self, run_hashes: Iterable[str]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM leases WHERE run_hash = ? AND owner = ?",
                                   [(h, self.owner) for h in run_hashes])

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._lock:
                    self._conn.execute("UPDATE leases SET heartbeat = ? WHERE owner = ?", (time.time(), self.owner))
            except sqlite3.Error:  # a busy store: the next beat tries again, well within the TTL
                continue

    def __enter__(self) -> RunLeases:
        self._beat = threading.Thread(target=self._heartbeat, name="bench-leases", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._lock:
            self._conn.execute("DELETE FROM leases WHERE owner = ?", (self.owner,))
            self._conn.close()
