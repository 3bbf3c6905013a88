"""What one Ray Tune trial does: distil the sets of its unit (one job, or a cell's seeds; each set
distilled or loaded from the cache) and evaluate them for every run, the students of one
student/protocol trained together where the device measured that faster (`evaluators.batching`),
or one by one, compiled where that measured faster (`evaluators.compiling`).
Every outcome, success or error, becomes a `ResultRow` that flows back to the driver, which
alone writes the store."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from benchmark.cluster.artifacts import TrialPlace, describe_node
from benchmark.grid.memory import PeakMemory
from core.artifacts import ArtifactCache
from core.datasets import Dataset, load_dataset
from core.distilled import DistilledSet
from core.errors import BenchError
from core.rows import ResultRow
from core.runs import DistillJob, RunSpec, TrialUnit, conditioning_of
from core.archs import StudentShape
from evaluators import compiling
from evaluators.batching import AUTO, SEPARATE, choose
from evaluators.evaluate import evaluate_students
from evaluators.protocols import resolve
from evaluators.quality import score_quality
from evaluators.teacher import teacher_source
from methods.base import DistillContext, Distiller
from methods.registry import method_of_run

Report = Callable[[dict[str, Any]], None]
DISTILLED = "distilled"  # the artifact kind of distilled sets


def distill_context(cache: ArtifactCache, device: torch.device,
                    report: Callable[[str], None] = lambda message: None) -> DistillContext:
    """The context a method runs in: this cache and device, and teachers from the evaluators."""
    return DistillContext(cache, device, report, teacher_source(cache, device))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def set_key(job: DistillJob, data: Dataset, distiller: Distiller) -> str:
    """The cache key of the job's distilled set (``distiller``: the job's method, resolved); the
    plan's recorded config is its identity (an external set's content hash lives only there)."""
    config = json.loads(job.runs[0].method_config) if job.runs else distiller.config()
    conditioning = job.runs[0].conditioning if job.runs else conditioning_of(data)
    return job.distill_key(config, data.fingerprint(), distiller.deterministic, conditioning)


def job_distiller(job: DistillJob) -> Distiller:
    """The job's method as planned (a tuned spec with the choice its runs record)."""
    return method_of_run(job.method, job.runs[0].method_config if job.runs else "{}").distiller


def place_set(job: DistillJob, data: Dataset, dset: DistilledSet, cache: ArtifactCache,
              distiller: Distiller | None = None) -> str:
    """Store a distilled set where the job's trials look for it; returns its key."""
    key = set_key(job, data, distiller or job_distiller(job))
    dset.meta.update({"distill_key": key, "method": job.method, "dataset": job.dataset, "ipc": job.ipc,
                      "seed": job.seed})
    cache.save(DISTILLED, key, dset.to_state(), meta={"method": job.method, "dataset": job.dataset,
                                                      "ipc": job.ipc, "seed": job.seed})
    return key


def distill_job(job: DistillJob, cache: ArtifactCache, device: torch.device, report: Report,
                data: Dataset | None = None) -> tuple[DistilledSet, float, bool]:
    """The job's distilled set, its distillation time and whether it came from the cache
    (``data``: the job's data set, when the caller has it already)."""
    data = data or load_dataset(job.dataset)
    distiller = job_distiller(job)
    ctx = distill_context(cache, device, lambda msg: report({"phase": msg}))
    start = time.perf_counter()
    if distiller.reference:
        return distiller.distill(data, job.ipc or 0, job.seed, ctx), 0.0, False
    state = cache.load(DISTILLED, set_key(job, data, distiller))
    if state is not None:
        return DistilledSet.from_state(state), float(state["meta"].get("distill_s", 0.0)), True
    report({"phase": "distilling"})
    with PeakMemory(device) as peak:
        dset = distiller.distill(data, job.ipc, job.seed, ctx)
    elapsed = time.perf_counter() - start
    expected = job.ipc * data.num_classes
    if len(dset) != expected:
        raise RuntimeError(f"{job.method} returned {len(dset)} images, expected {expected}")
    dset.meta["distill_s"] = elapsed
    dset.meta["distill_memory"] = peak.metrics("distill_")  # read back with the set when it is cached
    place_set(job, data, dset, cache, distiller)
    return dset, elapsed, False


class _ForwardWarnings(logging.Handler):
    """Sends the harness's warnings from a trial to the driver's console as ``{"warning": text}``
    (a worker's own log is out of the user's sight)."""

    def __init__(self, report: Report):
        super().__init__(logging.WARNING)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        self.report({"warning": record.getMessage()})


def execute_job(job: DistillJob, place: TrialPlace, device: torch.device, report: Report) -> None:
    """`execute_unit` of a single job."""
    execute_unit(TrialUnit((job,)), place, device, report)


def execute_unit(unit: TrialUnit, place: TrialPlace, device: torch.device, report: Report,
                 stacking: str = AUTO, compiling_policy: str = AUTO) -> None:
    """Run a whole unit; each finished run is reported as ``{"row": ResultRow}``, each warning of
    the harness (``core``, ``methods``, ``evaluators`` loggers) as ``{"warning": text}``.
    ``stacking`` (auto, always, never) decides whether a group of its students trains stacked,
    ``compiling_policy`` whether students trained one by one take compiled steps."""
    forward = _ForwardWarnings(report)
    loggers = [logging.getLogger(name) for name in ("core", "methods", "evaluators")]
    for logger in loggers:
        logger.addHandler(forward)
    try:
        _execute_unit(unit, place, device, report, stacking, compiling_policy)
    finally:
        for logger in loggers:
            logger.removeHandler(forward)


@dataclasses.dataclass
class _Ready:
    """A job's distilled set with what its rows record about it."""

    job: DistillJob
    data: Dataset  # as the trial's place provides it (from the driver, on a node without the data)
    dset: DistilledSet
    metrics: dict  # distillation time and memory, cache hit, key, size, image-quality metrics


def _distilled(job: DistillJob, place: TrialPlace, device: torch.device, report: Report) -> _Ready | None:
    """The job's set and its metrics, or None after reporting an error row for each of its runs."""
    try:
        cache = place.cache()
        # every trial checks that it holds the data the plan was made for, on whatever node
        data = place.dataset(job.dataset, job.runs[0].data_fingerprint, cache) if job.runs else None
        dset, distill_s, cached = distill_job(job, cache, device, report, data)
    except Exception as exc:  # a failing method must not stop the grid: record it per run
        text = str(exc) if isinstance(exc, BenchError) else _error_text(exc)
        for run in job.runs:
            report({"row": ResultRow.error(run, text)})
        return None
    data = data or load_dataset(job.dataset)
    quality: dict = {}
    if not dset.meta.get("reference") and job.runs:
        report({"phase": "image-quality metrics"})
        try:
            _, budget = resolve(job.runs[0].protocol, job.runs[0].budget)
            quality = score_quality(dset.images, dset.labels, data, budget, cache, device).to_dict()
        except Exception as exc:  # metrics are extra information: a failure must not lose the rows
            quality = {"quality_error": f"{type(exc).__name__}: {exc}"}
    return _Ready(job, data, dset, dset.meta.get("distill_memory", {}) | {
        "distill_s": distill_s, "distill_cached": cached, "distill_key": dset.meta.get("distill_key"),
        "images": len(dset), "bytes": dset.nbytes, **quality})


def _execute_unit(unit: TrialUnit, place: TrialPlace, device: torch.device, report: Report, stacking: str,
                  compiling_policy: str) -> None:
    ready = [r for r in (_distilled(job, place, device, report) for job in unit.jobs) if r is not None]
    if not ready:
        return
    # the runs of one student, protocol and budget, across the unit's seeds
    groups: dict[tuple[str, str, str], list[tuple[RunSpec, _Ready]]] = {}
    for r in ready:
        for run in r.job.runs:
            groups.setdefault((run.arch, run.protocol, run.budget), []).append((run, r))
    data = ready[0].data
    node = describe_node()
    for (arch, protocol_name, budget_name), members in groups.items():
        phase = f"training {arch} ({protocol_name}/{budget_name})"
        if len(members) > 1:
            phase += f", {len(members)} students"
        report({"phase": phase})
        try:
            protocol, budget = resolve(protocol_name, budget_name)
            full_data = bool(members[0][1].dset.meta.get("reference"))
            first = members[0][1].dset
            schedule = protocol.full_schedule(budget) if full_data else protocol.schedule(
                budget, len(first), members[0][0].ipc, data.num_classes)
            batch = schedule.images_per_step(len(first))
            batching = choose(arch, StudentShape.of(data), budget.student_width, batch, len(members),
                              device, place.cache(), stacking)
            compile_choice = compiling.choose(
                arch, StudentShape.of(data), budget.student_width, batch, schedule.steps, device,
                place.cache(), compiling_policy) if batching.mode == SEPARATE else compiling.CompileChoice(
                False, batching.device, "students stacked")
            with PeakMemory(device) as peak:
                results = evaluate_students(
                    [(r.dset.images, r.dset.labels) for _, r in members], data, arch, protocol, budget,
                    [run.seed for run, _ in members], device, full_data=full_data,
                    on_progress=lambda step, steps: report({"phase": f"{phase} step {step}/{steps}"}),
                    cache=place.cache(), ipc=members[0][0].ipc, mode=batching.mode, compiled=compile_choice.compiled)
        except Exception as exc:
            for run, _ in members:
                report({"row": ResultRow.error(run, _error_text(exc))})
            continue
        for (run, r), result in zip(members, results):
            metrics = (dataclasses.asdict(result) | r.metrics | peak.metrics("eval_") | batching.metrics()
                       | compile_choice.metrics() | {"device": str(device), "node": node,
                                                      "budget_description": budget.description})
            if metrics["teacher_test_acc"] is None:  # a selection method's own teacher, if it used one
                metrics["teacher_test_acc"] = r.dset.meta.get("teacher_test_acc")
            report({"row": ResultRow.ok(run, result.test_acc, metrics)})


def tune_trainable(config: dict[str, Any], units: list[dict[str, Any]] | None = None) -> None:
    """The Ray Tune function trainable: ``config`` picks a unit by index."""
    from ray import tune

    torch.set_num_threads(max(1, int(config["threads"])))
    import ray

    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    unit = TrialUnit.from_json(units[config["unit_index"]])
    place = TrialPlace.from_config(config)
    execute_unit(unit, place, device, lambda metrics: tune.report(metrics), config.get("stacking", AUTO),
                 config.get("compiling", AUTO))
    tune.report({"phase": "done", "done": True})
