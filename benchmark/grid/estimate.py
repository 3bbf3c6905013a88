"""What a grid will cost before it runs (`bench plan`): per distillation job, which runs the
store already holds, whether the distilled set is cached, and the expected seconds of
distillation and of training students, from a small model calibrated by the measurements the
harness records in every row (``distill_s``, ``train_s`` / ``train_steps``, ``test_s``), and the
expected peak memory of a trial (resident memory on the CPU, the CUDA allocator's peak on a GPU:
``distill_peak_*_gib``, ``eval_peak_*_gib``).

The model: a student's training time is its schedule's optimiser steps times the seconds per
step measured for the same student, protocol, budget, data set and device kind, interpolated
linearly in the batch size between the measured ones; distillation time is the seconds measured for
the same method spec and data set (the same method with other options where that spec was
never run), linear in IPC between the measured IPCs and along the nearest two beyond. A trial's
peak memory is the larger of its distillation's (the same method and data set, the largest
measured IPC at or above its own, else the largest measured) and its students' (the same board,
the median). A cell with no measurement to start from is reported as unknown, never guessed.

Before the trials, the driver builds the shared stages (`core.stages`: backbone parts, plug-in
modules, fine-tuned denoisers, teachers) one after another; each one the cache lacks costs the
seconds it took where it was last measured. Where the store has no row for a board or method,
the calibration shipped with the package (`benchmark.grid.calibration`) supplies the figures.
The wall time is the shared stages' sum plus the trials scheduled in the runner's order on as
many slots as run at once.
"""
from __future__ import annotations

import heapq
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from benchmark.grid.memory import peak_key
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.rows import ResultRow
from core.runs import DistillJob, RunSpec, group_jobs, longest_first
from core.stages import SharedStage
from evaluators.protocols import resolve
from evaluators.teacher import shared_stages as teacher_stages

# the cost tables of `CostModel`, each a map from a key tuple to a list of measurements (what a
# calibration carries)
TABLES = ("step_s", "test_s", "distill_s", "distill_peak", "eval_peak", "shared_s")


@dataclass(frozen=True)
class JobEstimate:
    """One distillation job of a plan: what is done already and what is left to pay for."""

    job: DistillJob
    runs_done: int
    set_cached: bool
    distill_s: float | None  # None: nothing measured to estimate from; 0 when nothing is left to distil
    train_s: float | None  # students still to train, training and test scoring
    peak_gib: float | None = None  # the trial's expected peak memory (None: nothing measured)

    @property
    def seconds(self) -> float | None:
        if self.distill_s is None or self.train_s is None:
            return None
        return self.distill_s + self.train_s


def _device_kind(row: ResultRow) -> str:
    return str(row.metrics.get("device", "cpu")).split(":")[0]


@dataclass
class CostModel:
    """Per-step student costs and per-set distillation costs, from a store's ok rows."""

    step_s: dict[tuple, list[tuple[int, float]]]  # (arch, protocol, budget, dataset, device) -> (batch, s/step)
    test_s: dict[tuple, list[float]]  # (arch, protocol, budget, dataset, device) -> scoring seconds
    distill_s: dict[tuple, list[tuple[int, float]]]  # (method, dataset, device) -> (ipc, seconds)
    distill_peak: dict[tuple, list[tuple[int, float]]]  # (method, dataset, device) -> (ipc, GiB)
    eval_peak: dict[tuple, list[float]]  # (arch, protocol, budget, dataset, device) -> GiB
    shared_s: dict[tuple, list[float]] = field(default_factory=dict)  # (stage, dataset, device) -> seconds

    def tables(self) -> dict[str, dict[tuple, list]]:
        return {name: getattr(self, name) for name in TABLES}

    def with_fallback(self, other: CostModel) -> CostModel:
        """This model, with ``other``'s measurements for every key this one lacks."""
        return CostModel(**{name: {**getattr(other, name), **getattr(self, name)} for name in TABLES})

    def shared_seconds(self, stage: SharedStage, device: str) -> float | None:
        measured = self.shared_s.get((stage.name, stage.dataset, device))
        return statistics.median(measured) if measured else None

    @classmethod
    def from_rows(cls, rows: list[ResultRow]) -> CostModel:
        step_s: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
        test_s: dict[tuple, list[float]] = defaultdict(list)
        distill_s: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
        distill_peak: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
        eval_peak: dict[tuple, list[float]] = defaultdict(list)
        for r in rows:
            m, device = r.metrics, _device_kind(r)
            board, peak = (r.arch, r.protocol, r.budget, r.dataset, device), peak_key(device)
            if m.get(f"eval_{peak}") is not None:
                eval_peak[board].append(float(m[f"eval_{peak}"]))
            if r.ipc is not None and m.get(f"distill_{peak}") is not None:
                distill_peak[(r.method, r.dataset, device)].append((r.ipc, float(m[f"distill_{peak}"])))
            if m.get("train_steps") and m.get("train_s") is not None:
                batch = min(int(r.config["protocol_config"]["protocol"]["batch_size"]), int(m.get("images") or 1))
                step_s[board].append((batch, float(m["train_s"]) / int(m["train_steps"])))
            if m.get("test_s") is not None:
                test_s[board].append(float(m["test_s"]))
            # a set loaded from the cache reports the seconds its distillation took when it was made
            if r.ipc is not None and m.get("distill_s") is not None:
                distill_s[(r.method, r.dataset, device)].append((r.ipc, float(m["distill_s"])))
        return cls(dict(step_s), dict(test_s), dict(distill_s), dict(distill_peak), dict(eval_peak))

    def peak_gib(self, method: str | None, run: RunSpec, device: str) -> float | None:
        """The expected peak memory of a trial that distils with ``method`` (None: nothing to
        distil) and trains the students of ``run``'s board; None when either is unmeasured."""
        students = self.eval_peak.get((run.arch, run.protocol, run.budget, run.dataset, device))
        if not students:
            return None
        peak = statistics.median(students)
        if method is None:
            return peak
        measured = self.distill_peak.get((method, run.dataset, device))
        if not measured:
            return None
        ipcs, peaks = zip(*sorted(measured))
        at_or_above = [p for i, p in zip(ipcs, peaks) if i >= (run.ipc or 0)]
        return max(peak, min(at_or_above) if at_or_above else max(peaks))

    def train_seconds(self, run: RunSpec, num_images: int, device: str) -> float | None:
        protocol, budget = resolve(run.protocol, run.budget)
        schedule = (protocol.full_schedule(budget) if run.ipc is None else
                    protocol.schedule(budget, num_images, run.ipc, num_classes=num_images // run.ipc))
        board = (run.arch, run.protocol, run.budget, run.dataset, device)
        measured = self.step_s.get(board)
        if not measured:
            return None
        sizes, costs = _medians(measured)
        # seconds per step, linear in the batch size between the measured ones, flat beyond them
        per_step = float(np.interp(min(schedule.batch_size, num_images), sizes, costs))
        return schedule.steps * per_step + statistics.median(self.test_s.get(board, [0.0]))

    def distill_seconds(self, method: str, dataset: str, ipc: int, device: str) -> float | None:
        # the same spec, else the same method with other options (`dit[adapt_steps=600]` ~ `dit`)
        measured = self.distill_s.get((method, dataset, device)) or [
            m for (name, d, dev), values in self.distill_s.items() if (d, dev) == (dataset, device)
            and name.split("[")[0] == method.split("[")[0] for m in values]
        if not measured:
            return None
        ipcs, costs = _medians(measured)
        if len(ipcs) == 1:
            return costs[0] * ipc / ipcs[0]
        # linear between measured IPCs; beyond them, the line through the two nearest
        lo, hi = (0, 1) if ipc < ipcs[0] else (-2, -1) if ipc > ipcs[-1] else (None, None)
        if lo is None:
            return float(np.interp(ipc, ipcs, costs))
        slope = (costs[hi] - costs[lo]) / (ipcs[hi] - ipcs[lo])
        return max(0.0, costs[lo] + slope * (ipc - ipcs[lo]))


def _medians(measured: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """The measured sizes in order, and the median of the seconds measured at each."""
    by_size: dict[int, list[float]] = defaultdict(list)
    for size, seconds in measured:
        by_size[size].append(seconds)
    sizes = sorted(by_size)
    return sizes, [statistics.median(by_size[size]) for size in sizes]


@dataclass(frozen=True)
class StageEstimate:
    """One shared stage the driver builds before the trials: cached, or its expected seconds."""

    stage: SharedStage
    cached: bool
    seconds: float | None  # 0 when cached; None: nothing measured to estimate from


def cost_model(rows: list[ResultRow], fallback: CostModel | None) -> CostModel:
    """The store's measurements, and ``fallback``'s (a calibration's) for what the store never
    measured."""
    model = CostModel.from_rows(rows)
    return model if fallback is None else model.with_fallback(fallback)


def plan_stages(jobs: list[DistillJob], cache: ArtifactCache) -> list[SharedStage]:
    """Every shared stage the driver's preparation of these jobs goes through, once each, in its
    order (`benchmark.grid.runner._prepare`): each method's, then each board's teachers."""
    from benchmark.grid.trial import job_distiller

    seen: set[tuple] = set()
    out: list[SharedStage] = []
    by_method: dict[tuple[str, str], list[SharedStage]] = {}  # a method's stages do not depend on IPC or seed
    for job in jobs:
        data = load_dataset(job.dataset)
        distiller = job_distiller(job)
        if (job.method, job.dataset) not in by_method:  # asking may load a backbone: once per method
            by_method[job.method, job.dataset] = [] if distiller.reference else distiller.shared_stages(data, cache)
        found = list(by_method[job.method, job.dataset])
        for run in job.runs:
            protocol, budget = resolve(run.protocol, run.budget)
            found += teacher_stages(data, run.arch, protocol, budget, quality=not distiller.reference)
        for stage in found:
            if stage.identity() not in seen:
                seen.add(stage.identity())
                out.append(stage)
    return out


def estimate_stages(stages: list[SharedStage], model: CostModel, cache: ArtifactCache,
                    device: str) -> list[StageEstimate]:
    out = []
    for stage in stages:
        cached = stage.cached(cache)
        out.append(StageEstimate(stage, cached, 0.0 if cached else model.shared_seconds(stage, device)))
    return out


def estimate(runs: list[RunSpec], done: set[str], rows: list[ResultRow], cache: ArtifactCache,
             device: str, fallback: CostModel | None = None) -> tuple[list[JobEstimate], list[StageEstimate]]:
    """Every job of the plan with what is done and the estimated seconds of what is not, and
    the shared stages that what is not done needs, cached or with their estimated seconds.
    ``fallback`` (the shipped calibration's model) supplies the costs the store never measured."""
    from benchmark.grid.trial import DISTILLED, job_distiller, set_key

    model = cost_model(rows, fallback)
    out = []
    for job in group_jobs(runs):
        data = load_dataset(job.dataset)
        distiller = job_distiller(job)
        todo = [r for r in job.runs if r.run_hash not in done]
        reference = distiller.reference
        cached = not reference and cache.meta(DISTILLED, set_key(job, data, distiller)) is not None
        images = len(data.train) if reference else (job.ipc or 0) * data.num_classes
        distils = bool(todo) and not reference and not cached
        distill = model.distill_seconds(job.method, job.dataset, job.ipc or 0, device) if distils else 0.0
        costs = [model.train_seconds(r, images, device) for r in todo]
        train = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
        peaks = [model.peak_gib(job.method if distils else None, r, device) for r in todo]
        peak = None if not peaks or any(p is None for p in peaks) else max(p for p in peaks if p is not None)
        out.append(JobEstimate(job, len(job.runs) - len(todo), cached, distill, train, peak))
    left = [e.job for e in out if e.runs_done < len(e.job.runs)]
    return out, estimate_stages(plan_stages(left, cache), model, cache, device)


def makespan(seconds: list[float], slots: int) -> float:
    """The wall time of trials of these seconds started in this order on ``slots`` at once, each
    taking the first slot free (what Tune does with trials of equal resources)."""
    free = [0.0] * max(1, slots)
    for s in seconds:
        heapq.heapreplace(free, free[0] + s)
    return max(free)


def plan_totals(jobs: list[JobEstimate], stages: list[StageEstimate], cpus_per_trial: float, device: str) -> dict:
    """Totals of a plan: runs, what is done, estimated seconds of what is left (the shared stages,
    built one after another in the driver, then the trials) and its wall time."""
    runs = sum(len(j.job.runs) for j in jobs)
    done = sum(j.runs_done for j in jobs)
    left = [j for j in jobs if j.runs_done < len(j.job.runs)]
    order = {id(job): i for i, job in enumerate(longest_first([j.job for j in left]))}
    started = sorted(left, key=lambda j: order[id(j.job)])  # the runner starts trials in this order
    known = [j.seconds for j in started if j.seconds is not None]
    parallel = max(1, int((os.cpu_count() or 1) // cpus_per_trial)) if device == "cpu" else 1
    to_build = [s for s in stages if not s.cached]
    shared = sum(s.seconds for s in to_build if s.seconds is not None)
    peaks = [j.peak_gib for j in left if j.peak_gib is not None]
    return {"runs": runs, "in_store": done, "to_run": runs - done, "jobs_to_run": len(left),
            "peak_gib": round(max(peaks), 2) if peaks else None,
            "sets_cached": sum(j.set_cached for j in jobs), "estimated_s": round(sum(known) + shared, 1),
            "unknown_jobs": len(left) - len(known), "device": device, "trials_at_once": parallel,
            "shared_stages": len(stages), "shared_to_build": len(to_build), "shared_s": round(shared, 1),
            "unknown_shared": sum(s.seconds is None for s in to_build),
            "estimated_wall_s": round(shared + makespan(known, parallel), 1)}
