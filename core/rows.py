"""The result row: one evaluated run, what was run (its config and hash) and what came out
(accuracy and metrics, or the error). Built here only, by `ResultRow.ok` and `ResultRow.error`,
and sent from a trial to the driver as this record."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from core.artifacts import json_default
from core.runs import RunSpec, run_label

COLUMNS = (
    "run_hash", "status", "method", "dataset", "ipc", "arch", "protocol", "budget", "seed",
    "test_acc", "config", "metrics", "error", "git_commit", "versions", "created_at",
)
JSON_COLUMNS = ("config", "metrics", "versions")
STATUSES = ("ok", "error")


def dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys) of a row's field; numpy and torch scalars become numbers."""
    return json.dumps(obj, sort_keys=True, default=json_default)


@dataclass
class ResultRow:
    """One run. ``git_commit``, ``versions`` and ``created_at`` are stamped by the driver."""

    run_hash: str
    status: str
    method: str
    dataset: str
    ipc: int | None
    arch: str
    protocol: str
    budget: str
    seed: int
    test_acc: float | None
    config: dict
    metrics: dict
    error: str | None = None
    git_commit: str = ""
    versions: dict = field(default_factory=dict)
    created_at: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be 'ok' or 'error', got {self.status!r}")

    @classmethod
    def _of(cls, run: RunSpec, status: str, test_acc: float | None, metrics: dict, error: str | None) -> ResultRow:
        return cls(run.run_hash, status, run.method, run.dataset, run.ipc, run.arch, run.protocol, run.budget,
                   run.seed, test_acc, run.config(), metrics, error)

    @classmethod
    def ok(cls, run: RunSpec, test_acc: float, metrics: dict) -> ResultRow:
        """A finished run; ``metrics`` must be JSON-able (numbers, strings, lists, dicts)."""
        return cls._of(run, "ok", test_acc, json.loads(dumps(metrics)), None)

    @classmethod
    def error(cls, run: RunSpec, message: str) -> ResultRow:
        """A failed run with its error text; the run spec is kept so the failure can be traced."""
        return cls._of(run, "error", None, {}, message)

    def stamped(self, git_commit: str, versions: dict, created_at: float) -> ResultRow:
        """The row with the provenance of the driver that stores it."""
        return dataclasses.replace(self, git_commit=git_commit, versions=versions, created_at=created_at)

    def label(self) -> str:
        return run_label(self.method, self.dataset, self.ipc, self.arch, self.seed)

    def to_json(self) -> dict:
        """A flat JSON-able dict of every field."""
        return json.loads(dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict) -> ResultRow:
        """Inverse of :meth:`to_json`; unknown keys are ignored."""
        return cls(**{k: data[k] for k in COLUMNS if k in data})
