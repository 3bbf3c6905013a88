"""Tuning studies: what `bench tune` searched, every trial's history, and the choice it made.

A study is one search over a method's declared space (`methods.registry.tuning_space`) on one
data set, IPC, student, protocol and budget. It is kept in the result store's SQLite file, in
its own table, as JSON (nothing is unpickled), keyed by a content hash of everything that
defines the search, so an equal `bench tune` finds it done. ``name[tuned]`` in `bench run` takes
the choice of the latest study of ``name`` on the data set.
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BenchError
from methods.registry import TunedChoice

# a trial's status: it trained to the end, ASHA stopped it at a rung, or it raised
COMPLETE, STOPPED, FAILED = "complete", "stopped early", "error"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study_key        TEXT PRIMARY KEY,
    method           TEXT NOT NULL,
    dataset          TEXT NOT NULL,
    data_fingerprint TEXT NOT NULL,
    record           TEXT NOT NULL,
    created_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_method ON studies (method, data_fingerprint);
"""


@dataclass
class TrialRecord:
    """One candidate of a study: its options (as option text) and what it scored."""

    number: int  # in the order the searcher proposed it; 0 is the method's own defaults when they lie in the space
    options: dict[str, str]
    scores: list[tuple[int, float]] = field(default_factory=list)  # (student step, validation accuracy)
    status: str = COMPLETE
    objective: float | None = None  # validation accuracy of the weights the protocol reports
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Study:
    """A finished search. ``chosen`` is the complete trial with the best objective (the earlier
    one on a tie); None when no trial completed."""

    key: str
    method: str  # the label of the tuned spec, e.g. "dit[adapt_steps=600]"
    dataset: str
    data_fingerprint: str
    ipc: int
    arch: str
    protocol: str
    budget: str
    seed: int
    space: dict[str, str]  # option -> its range, as text
    search: dict[str, Any]  # the searcher, the early-stopping scheduler and their settings
    trials: list[TrialRecord]
    git_commit: str = ""
    created_at: float = 0.0

    @property
    def chosen(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.status == COMPLETE and t.objective is not None]
        return max(done, key=lambda t: (t.objective, -t.number)) if done else None

    @property
    def defaults(self) -> TrialRecord | None:
        """The trial of the method's own defaults, when the study began with them."""
        return next((t for t in self.trials if t.number == 0 and self.search.get("starts_at_defaults")), None)

    def choice(self) -> TunedChoice | None:
        best = self.chosen
        return None if best is None else TunedChoice(self.key, dict(best.options))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        chosen = self.chosen
        d["chosen"] = None if chosen is None else {"trial": chosen.number, "options": chosen.options,
                                                   "val_acc": chosen.objective}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Study:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in fields}
        values["trials"] = [TrialRecord(**{**t, "scores": [tuple(s) for s in t["scores"]]}) for t in d["trials"]]
        return cls(**values)


class StudyStore:
    """The ``studies`` table of ``<root>/bench.sqlite3`` (the result store's file); it is created
    by the first study stored, so reading a store never changes it."""

    def __init__(self, root: str | Path, readonly: bool = False):
        """``readonly``: for the commands that only read studies; nothing is written beside the file."""
        from benchmark.store.results import DB_NAME, connect

        self.path = Path(root).expanduser() / DB_NAME
        self._lock = threading.Lock()
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = connect(self.path, readonly)
        except (OSError, sqlite3.Error) as exc:
            raise BenchError(f"cannot use the tuning studies in {self.path}: {exc}; set --store to a writable "
                             "directory") from None

    def put(self, study: Study) -> None:
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR REPLACE INTO studies (study_key, method, dataset, data_fingerprint, record, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (study.key, study.method, study.dataset, study.data_fingerprint,
                 json.dumps(study.to_json(), sort_keys=True), study.created_at))

    def get(self, key: str) -> Study | None:
        found = self._select("WHERE study_key = ?", [key])
        return found[0] if found else None

    def latest(self, method: str, data_fingerprint: str) -> Study | None:
        """The newest study of ``method`` on this data that chose something."""
        found = [s for s in self._select("WHERE method = ? AND data_fingerprint = ?", [method, data_fingerprint])
                 if s.chosen is not None]
        return max(found, key=lambda s: s.created_at) if found else None

    def all(self) -> list[Study]:
        return self._select("", [])

    def _select(self, clause: str, args: list[Any]) -> list[Study]:
        with self._lock:
            exists = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'").fetchone()
            if not exists:
                return []
            rows = self._conn.execute(f"SELECT record FROM studies {clause} ORDER BY created_at", args).fetchall()
        return [Study.from_json(json.loads(record)) for (record,) in rows]

    def close(self) -> None:
        self._conn.close()


def choices_in(root: str | Path):
    """The `benchmark.grid.plan.ChoiceLookup` of the studies in the store at ``root``: a tuned spec
    takes the choice of the latest study of its label on the data set."""
    def lookup(label: str, data) -> TunedChoice | None:
        studies = StudyStore(root, readonly=True)
        try:
            study = studies.latest(label, data.fingerprint())
        finally:
            studies.close()
        return None if study is None else study.choice()

    return lookup
