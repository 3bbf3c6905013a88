"""The calibration `bench plan` ships with: what the harness measured on a named machine (per-step
student costs by board and batch, scoring seconds, distillation seconds by method, data set and
IPC, peak memory, and the seconds each shared stage took to build), so that a plan estimates a
grid before the store holds a single row of it.

It is made by `benchmarks/calibrate.py` from a store and the artifact cache of a cold run (the
rows carry their costs; the cache records carry ``build_s``, the seconds each shared model took)
and read from ``calibration.json`` beside this module. The store's own rows win over it wherever
both have the same board or method: the calibration fills in only what the store never measured.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.grid.estimate import TABLES, CostModel, plan_stages
from core.artifacts import ArtifactCache
from core.rows import ResultRow
from core.runs import RunSpec, group_jobs
from core.stages import SharedStage

SHIPPED = Path(__file__).with_name("calibration.json")
VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """Measured costs and where they were measured."""

    machine: dict  # cpu, cores, torch version, device: what the figures hold for
    commit: str
    source: str  # what run produced them
    tables: dict[str, dict[tuple, list]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"version": VERSION, "machine": self.machine, "commit": self.commit, "source": self.source,
                "tables": {name: [{"key": list(key), "values": values} for key, values in sorted(table.items(), key=lambda kv: json.dumps(kv[0]))]
                           for name, table in self.tables.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        if data.get("version") != VERSION:
            raise ValueError(f"calibration version {data.get('version')!r}, this harness reads {VERSION}")
        tables = {name: {tuple(entry["key"]): [tuple(v) if isinstance(v, list) else v for v in entry["values"]]
                         for entry in entries}
                  for name, entries in data["tables"].items() if name in TABLES}
        return cls(data["machine"], data["commit"], data["source"], tables)

    def model(self) -> CostModel:
        """These measurements as a cost model (what `bench plan` falls back on)."""
        return CostModel(**{name: self.tables.get(name, {}) for name in TABLES})

    def describe(self) -> str:
        m = self.machine
        return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('device', '?')}, at {self.commit[:7]}"


def shipped() -> Calibration | None:
    """The calibration beside this module, or None where there is none (or it cannot be read:
    `bench plan` then estimates from the store alone)."""
    try:
        return Calibration.from_json(json.loads(SHIPPED.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shared_costs(stages: list[SharedStage], cache: ArtifactCache, device: str) -> dict[tuple, list[float]]:
    """The seconds each built stage took, read from its cache record's ``build_s``:
    (stage name, data set, device) -> seconds."""
    out: dict[tuple, list[float]] = {}
    for stage in stages:
        record = cache.meta(stage.kind, stage.key) if stage.key is not None else None
        if record is not None and record.get("build_s") is not None:
            out.setdefault((stage.name, stage.dataset, device), []).append(float(record["build_s"]))
    return out


def calibrate(rows: list[ResultRow], runs: list[RunSpec], cache: ArtifactCache, device: str, *,
              machine: dict, commit: str, source: str) -> Calibration:
    """A calibration from the ok rows of a store and the shared stages of ``runs`` built in
    ``cache`` (each record's ``build_s``)."""
    model = CostModel.from_rows([r for r in rows if r.status == "ok"])
    model.shared_s = shared_costs(plan_stages(group_jobs(runs), cache), cache, device)
    return Calibration(machine, commit, source, {name: table for name, table in model.tables().items() if table})
