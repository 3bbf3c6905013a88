"""What one Ray Tune trial does: distil one set (or load it from the cache) and evaluate it
for every run of its job. Every outcome, success or error, becomes a row dict that flows back
to the driver, which alone writes the store."""
from __future__ import annotations

import dataclasses
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.runs import DistillJob, RunSpec
from evaluators.evaluate import evaluate_set
from evaluators.protocols import resolve
from evaluators.quality import measure
from evaluators.teacher import quality_teacher
from methods import resolve_method
from methods.base import DistillContext, DistilledSet

Report = Callable[[dict[str, Any]], None]


def _row(run: RunSpec, status: str, test_acc: float | None, metrics: dict, error: str | None) -> dict:
    return {"run_hash": run.run_hash, "status": status, "method": run.method, "dataset": run.dataset,
            "ipc": run.ipc, "arch": run.arch, "protocol": run.protocol, "budget": run.budget,
            "seed": run.seed, "test_acc": test_acc, "config": run.config(), "metrics": metrics,
            "error": error}


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def distill_job(job: DistillJob, cache: ArtifactCache, device: torch.device, report: Report) -> tuple[DistilledSet, float, bool]:
    """The job's distilled set, its distillation time and whether it came from the cache."""
    data = load_dataset(job.dataset)
    spec = resolve_method(job.method)
    distiller = spec.distiller
    ctx = DistillContext(cache, device, lambda msg: report({"phase": msg}))
    start = time.perf_counter()
    if distiller.reference:
        return distiller.distill(data, job.ipc or 0, job.seed, ctx), 0.0, False
    # the plan's recorded config is the identity of the set (an external set's hash lives only there)
    config = json.loads(job.runs[0].method_config) if job.runs else distiller.config()
    key = job.distill_key(config, data.fingerprint(), distiller.deterministic)
    state = cache.load("distilled", key)
    if state is not None:
        return DistilledSet.from_state(state), float(state["meta"].get("distill_s", 0.0)), True
    report({"phase": "distilling"})
    dset = distiller.distill(data, job.ipc, job.seed, ctx)
    elapsed = time.perf_counter() - start
    expected = job.ipc * data.num_classes
    if len(dset) != expected:
        raise RuntimeError(f"{job.method} returned {len(dset)} images, expected {expected}")
    dset.meta.update({"distill_s": elapsed, "distill_key": key, "method": job.method,
                      "dataset": job.dataset, "ipc": job.ipc, "seed": job.seed})
    cache.save("distilled", key, dset.to_state(), meta={"method": job.method, "dataset": job.dataset,
                                                         "ipc": job.ipc, "seed": job.seed})
    return dset, elapsed, False


def _quality(dset: DistilledSet, data, run: RunSpec, cache: ArtifactCache, device: torch.device) -> dict:
    _, budget = resolve(run.protocol, run.budget)
    teacher = quality_teacher(data, budget, cache, device)
    return measure(dset.images, dset.labels, data, teacher, device).to_dict()


def execute_job(job: DistillJob, cache_root: str, device: torch.device, report: Report) -> None:
    """Run a whole job; each finished run is reported as ``{"row": json}``."""
    cache = ArtifactCache(cache_root)
    try:
        dset, distill_s, cached = distill_job(job, cache, device, report)
    except Exception as exc:  # a failing method must not stop the grid: record it per run
        text = _error_text(exc)
        for run in job.runs:
            report({"row": json.dumps(_row(run, "error", None, {}, text))})
        return
    data = load_dataset(job.dataset)
    quality: dict = {}
    if not dset.meta.get("reference") and job.runs:
        report({"phase": "image-quality metrics"})
        try:
            quality = _quality(dset, data, job.runs[0], cache, device)
        except Exception as exc:  # metrics are extra information: a failure must not lose the rows
            quality = {"quality_error": f"{type(exc).__name__}: {exc}"}
    for run in job.runs:
        phase = f"training {run.arch} ({run.protocol}/{run.budget})"
        report({"phase": phase})
        try:
            protocol, budget = resolve(run.protocol, run.budget)
            result = evaluate_set(dset.images, dset.labels, data, run.arch, protocol, budget, run.seed,
                                  device, full_data=bool(dset.meta.get("reference")),
                                  on_progress=lambda step, steps: report({"phase": f"{phase} step {step}/{steps}"}),
                                  cache=cache, ipc=run.ipc)
            metrics = dataclasses.asdict(result) | {
                "distill_s": distill_s, "distill_cached": cached, "distill_key": dset.meta.get("distill_key"),
                "images": len(dset), "bytes": dset.nbytes,
                "device": str(device), "budget_description": budget.description, **quality}
            if metrics["teacher_test_acc"] is None:  # a selection method's own teacher, if it used one
                metrics["teacher_test_acc"] = dset.meta.get("teacher_test_acc")
            report({"row": json.dumps(_row(run, "ok", result.test_acc, metrics, None))})
        except Exception as exc:
            report({"row": json.dumps(_row(run, "error", None, {}, _error_text(exc)))})


def tune_trainable(config: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> None:
    """The Ray Tune function trainable: ``config`` picks a job by index."""
    from ray import tune

    torch.set_num_threads(max(1, int(config["threads"])))
    import ray

    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    job = DistillJob.from_json(jobs[config["job_index"]])
    execute_job(job, config["cache_root"], device, lambda metrics: tune.report(metrics))
    tune.report({"phase": "done", "done": True})
