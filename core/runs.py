"""The run grid: (method x dataset x IPC x arch x seed) expanded into content-hashed specs.

A `DistillJob` is one (method, dataset, IPC, seed) distillation, evaluated for every arch
it is paired with; it is the unit a Ray Tune trial executes. A `RunSpec` is one row of the
result store. The `full` reference ignores IPC, so it yields one job per (dataset, seed).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from core.artifacts import content_key
from core.datasets.base import Dataset

HARNESS_VERSION = 1  # bump when a change alters what any run computes


@dataclass(frozen=True)
class RunSpec:
    """One evaluated run: a row of the result store."""

    method: str  # canonical method spec
    method_config: str  # JSON of the distiller's config
    dataset: str
    data_fingerprint: str
    ipc: int | None
    arch: str
    protocol: str
    protocol_config: str  # JSON of the protocol and budget definitions
    budget: str
    seed: int
    # JSON of where the classes' names, prompts and ImageNet ids come from, for data sets whose
    # classes are ImageNet classes; empty (and then absent from the config and its hash, which
    # keeps the hashes of earlier rows) for data sets that name their own classes
    conditioning: str = ""

    def config(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method_config"] = json.loads(self.method_config)
        d["protocol_config"] = json.loads(self.protocol_config)
        d["harness_version"] = HARNESS_VERSION
        if self.conditioning:
            d["conditioning"] = json.loads(self.conditioning)
        else:
            del d["conditioning"]
        return d

    @property
    def run_hash(self) -> str:
        return content_key(self.config())

    def label(self) -> str:
        return run_label(self.method, self.dataset, self.ipc, self.arch, self.seed)


def run_label(method: str, dataset: str, ipc: int | None, arch: str, seed: int) -> str:
    """A run as one line: method, data set, IPC, student and seed."""
    return f"{method} {dataset} {'full' if ipc is None else f'ipc{ipc}'} {arch} seed{seed}"


@dataclass(frozen=True)
class DistillJob:
    """One distillation and the runs that evaluate it."""

    method: str
    dataset: str
    ipc: int | None
    seed: int
    runs: tuple[RunSpec, ...]

    def distill_key(self, method_config: dict[str, Any], data_fingerprint: str, deterministic: bool,
                    conditioning: str = "") -> str:
        """Content key of the distilled set; deterministic methods ignore the seed. The data set's
        conditioning (see `RunSpec.conditioning`) enters only when there is one."""
        key = {"method": method_config, "data": data_fingerprint, "ipc": self.ipc,
               "seed": None if deterministic else self.seed, "harness_version": HARNESS_VERSION}
        if conditioning:
            key["conditioning"] = json.loads(conditioning)
        return content_key(key)

    def label(self) -> str:
        ipc = "" if self.ipc is None else f" · ipc {self.ipc}"
        return f"{self.method} · {self.dataset}{ipc} · seed {self.seed}"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "dataset": self.dataset, "ipc": self.ipc, "seed": self.seed,
                "runs": [dataclasses.asdict(r) for r in self.runs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DistillJob:
        return cls(d["method"], d["dataset"], d["ipc"], d["seed"], tuple(RunSpec(**r) for r in d["runs"]))


@dataclass(frozen=True)
class TrialUnit:
    """What one trial does: one job, or where trials get a GPU every seed's job of one cell
    (method, data set, IPC), so the cell's students can train stacked (`evaluators.batched`)."""

    jobs: tuple[DistillJob, ...]

    @property
    def runs(self) -> tuple[RunSpec, ...]:
        return tuple(r for job in self.jobs for r in job.runs)

    def label(self) -> str:
        if len(self.jobs) == 1:
            return self.jobs[0].label()
        first = self.jobs[0]
        ipc = "" if first.ipc is None else f" · ipc {first.ipc}"
        return f"{first.method} · {first.dataset}{ipc} · seeds {','.join(str(j.seed) for j in self.jobs)}"

    def to_json(self) -> dict[str, Any]:
        return {"jobs": [job.to_json() for job in self.jobs]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrialUnit:
        return cls(tuple(DistillJob.from_json(j) for j in d["jobs"]))


def group_units(jobs: list[DistillJob], by_cell: bool) -> list[TrialUnit]:
    """A trial per job, or (``by_cell``) a trial per cell holding its seeds' jobs, in the jobs' order."""
    if not by_cell:
        return [TrialUnit((job,)) for job in jobs]
    cells: dict[tuple, list[DistillJob]] = {}
    for job in jobs:
        cells.setdefault((job.method, job.dataset, job.ipc), []).append(job)
    return [TrialUnit(tuple(cell)) for cell in cells.values()]


def longest_first(jobs: list[DistillJob]) -> list[DistillJob]:
    """The order trials start in: the full-data references, then the largest sets first (a
    student's training grows with its set), so the trials left when the cores start to empty are
    the shortest ones, and no long trial runs alone at the end; the grid's order within an IPC."""
    return sorted(jobs, key=lambda job: (job.ipc is not None, -(job.ipc or 0)))


def group_jobs(runs: list[RunSpec]) -> list[DistillJob]:
    """Group runs that share one distilled set into jobs, keeping the grid's order."""
    jobs: dict[tuple, list[RunSpec]] = {}
    for r in runs:
        jobs.setdefault((r.method, r.dataset, r.ipc, r.seed), []).append(r)
    return [DistillJob(m, d, i, s, tuple(rs)) for (m, d, i, s), rs in jobs.items()]


def conditioning_of(data: Dataset) -> str:
    """A data set's `RunSpec.conditioning`: its prompt source and ImageNet wnids, or "" when it
    names its own classes."""
    if data.wnids is None:
        return ""
    return json.dumps({"prompts": data.prompt_source, "wnids": list(data.wnids)}, sort_keys=True)
