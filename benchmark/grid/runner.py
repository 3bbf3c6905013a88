"""Executes a planned grid with Ray Tune: skips finished runs, prepares shared prerequisites,
runs one trial per distillation job (per cell, its seeds together, where trials get a GPU: its
students may then train stacked), and writes every row to the store as it arrives."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.cluster.artifacts import trial_places
from benchmark.cluster.ray_session import RaySession, quiet_tune, ray_session
from benchmark.cluster.tune_events import driver_callback
from benchmark.grid.progress import GridProgress, PlainProgress, grid_progress
from benchmark.grid.trial import distill_context, job_distiller
from benchmark.store.leases import RunLeases
from benchmark.store.provenance import git_commit, versions
from benchmark.store.results import ResultStore
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.errors import BenchError
from core.rows import ResultRow
from core.runs import DistillJob, RunSpec, TrialUnit, group_jobs, group_units, longest_first
from evaluators.batching import ALWAYS, AUTO
from evaluators.protocols import resolve
from evaluators.teacher import prepare as prepare_evaluation


@dataclass(frozen=True)
class RunnerOptions:
    cache_root: str
    address: str | None = None  # join an existing Ray cluster instead of starting one
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when a GPU is visible, else 0
    fresh: bool = False
    shared_storage: bool = False  # cache_root is a directory every node mounts at the same path
    stack_students: str = AUTO  # a cell's seeds in one trial, trained stacked: auto, always or never
    compile_students: str = AUTO  # students' steps through torch.compile: auto, always or never


@dataclass
class RunSummary:
    total: int
    skipped: int
    ok: int = 0
    failed: list[str] = field(default_factory=list)  # labels of failed runs
    seconds: float = 0.0
    retried: int = 0  # trials restarted after their worker died
    not_done: int = 0  # runs of ours that never reported: the grid was interrupted (Ctrl-C) before them
    elsewhere: dict[str, str] = field(default_factory=dict)  # run hash -> the live `bench run` (host:pid) doing it


# A trial whose worker process dies (killed, out of memory, its node lost) is started again this
# many times; a method that raises is not retried (the trial records the error rows itself).
# Rows are keyed by run hash, so a retried trial never leaves a duplicate.
TRIAL_RETRIES = 2


class StoreRecorder:
    """The driver's handler of trial events (`benchmark.cluster.tune_events`): rows go to the
    store the moment a trial reports them."""

    def __init__(self, store: ResultStore, units: list[TrialUnit], progress: GridProgress | PlainProgress,
                 summary: RunSummary, leases: RunLeases):
        self.store, self.units, self.progress, self.summary = store, units, progress, summary
        self.leases = leases
        self.reported: dict[str, set[str]] = {}

    def _unit(self, trial) -> TrialUnit:
        return self.units[trial.config["unit_index"]]

    def on_trial_result(self, trial, result) -> None:
        unit = self._unit(trial)
        if "row" in result:
            row: ResultRow = result["row"]
            self._write(row)
            self.reported.setdefault(trial.trial_id, set()).add(row.run_hash)
            self.progress.status(trial.trial_id, unit.label(), f"finished {row.arch}")
        elif result.get("warning"):
            self.progress.warn(unit.label(), str(result["warning"]))
        elif result.get("phase"):
            self.progress.status(trial.trial_id, unit.label(), str(result["phase"]))

    def on_trial_complete(self, trial) -> None:
        self.progress.trial_done(trial.trial_id)

    def on_trial_recover(self, trial) -> None:
        self.summary.retried += 1
        self.progress.status(trial.trial_id, self._unit(trial).label(), "worker lost; starting it again")

    def on_trial_error(self, trial) -> None:
        # the worker died outside our own error handling: record every unreported run
        done = self.reported.get(trial.trial_id, set())
        message = f"trial {trial.trial_id} died: {trial.error_file or 'no error file'}"
        for run in self._unit(trial).runs:
            if run.run_hash not in done:
                self._write(ResultRow.error(run, message))
        self.progress.trial_done(trial.trial_id)

    def _write(self, row: ResultRow) -> None:
        self.store.put(row.stamped(git_commit(), versions(), time.time()))
        self.leases.release([row.run_hash])
        ok = row.status == "ok"
        if ok:
            self.summary.ok += 1
        else:
            self.summary.failed.append(f"{row.label()}: {(row.error or 'no error text').splitlines()[0]}")
        self.progress.run_done(ok)


def _prepare(jobs: list[DistillJob], cache: ArtifactCache, progress: GridProgress | PlainProgress) -> None:
    """Build what several trials share (teachers, fine-tuned models) once, in the driver, so
    concurrent trials do not each train the same thing."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ctx = distill_context(cache, device, lambda msg: progress.status("prepare", "prepare", msg))
    seen: set[tuple] = set()
    for job in jobs:
        data = load_dataset(job.dataset)
        distiller = job_distiller(job)
        if (job.method, job.dataset) not in seen and not distiller.reference:
            seen.add((job.method, job.dataset))
            distiller.prepare(data, ctx)
        for run in job.runs:
            needs = (job.dataset, run.arch, run.protocol, run.budget, not distiller.reference)
            if needs not in seen:
                seen.add(needs)
                protocol, budget = resolve(run.protocol, run.budget)
                prepare_evaluation(data, run.arch, protocol, budget, cache, device, ctx.report,
                                   quality=not distiller.reference)
    progress.trial_done("prepare")


def run_grid(runs: list[RunSpec], store: ResultStore, options: RunnerOptions) -> RunSummary:
    """Run every run of the grid that the store does not already hold."""
    start = time.perf_counter()
    done = set() if options.fresh else store.done_hashes()
    pending = [r for r in runs if r.run_hash not in done]
    summary = RunSummary(total=len(runs), skipped=len(runs) - len(pending))
    if pending:
        with RunLeases(store.path) as leases:
            claim = leases.claim(r.run_hash for r in pending)
            finished = set() if options.fresh else store.done_hashes()  # by another `bench run` meanwhile
            summary.skipped += sum(r.run_hash in finished for r in pending)
            summary.elsewhere = claim.held
            ours = set(claim.ours) - finished
            pending = [r for r in pending if r.run_hash in ours]
            if pending:
                _run_claimed(pending, store, options, summary, leases)
                # Tune ends an experiment quietly on SIGINT: what never reported was not done
                summary.not_done = len(pending) - summary.ok - len(summary.failed)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_claimed(pending: list[RunSpec], store: ResultStore, options: RunnerOptions, summary: RunSummary,
                 leases: RunLeases) -> None:
    # the embedded cluster and Tune write under a private folder of this run, removed at the end
    # (and by the next run, should this one be killed)
    with ray_session(options.address) as session:
        _run_on_ray(pending, store, options, summary, leases, session)


def _run_on_ray(pending: list[RunSpec], store: ResultStore, options: RunnerOptions, summary: RunSummary,
                leases: RunLeases, session: RaySession) -> None:
    cache = ArtifactCache(options.cache_root)
    git_commit(), versions()  # provenance as of the launch: later edits to the checkout do not leak into rows
    jobs = longest_first(group_jobs(pending))
    quiet_tune()
    import ray

    gpus = options.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    resources = {"cpu": options.cpus_per_trial, "gpu": gpus}
    # a trial with a GPU takes a whole cell: one tiny student leaves a GPU idle, several may not;
    # CPU trials keep one seed each (unless asked), so trials in parallel fill the cores
    by_cell = options.stack_students == ALWAYS or (options.stack_students == AUTO and gpus > 0)
    units = group_units(jobs, by_cell=by_cell)
    check_fits(ray.nodes(), options.cpus_per_trial, gpus)
    # a cluster we joined may hold other machines: their trials reach this cache through the server
    with trial_places(cache, session.scratch.name, options.shared_storage, session.cluster) as place, \
            grid_progress(len(pending)) as progress:
        _prepare(jobs, cache, progress)
        _fit(units, resources, {"threads": max(1, int(options.cpus_per_trial)), "stacking": options.stack_students,
                                "compiling": options.compile_students,
                                **place}, session.scratch / "tune",
             driver_callback(StoreRecorder(store, units, progress, summary, leases)))


def _fit(units: list[TrialUnit], resources: dict[str, float], config: dict[str, Any], tune_dir: Path,
         callback: Any) -> None:
    """One Ray Tune experiment: a trial per unit."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_trainable(), units=[u.to_json() for u in units]), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"unit_index": tune.grid_search(list(range(len(units)))), **config},
        # one worker process serves trial after trial: imports and the loaded backbone are
        # paid once per worker, not per trial (every trial seeds what it draws)
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name="bench", storage_path=str(tune_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            callbacks=[callback],
        ),
    )
    tuner.fit()


def check_fits(nodes: list[dict], cpus: float, gpus: float) -> None:
    """Refuse, before anything waits, a trial that no live node of the cluster can hold (Tune
    would wait for it forever)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in alive):
        return
    largest = max(alive, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise BenchError(f"no node of the Ray cluster can hold a trial of {cpus:g} CPUs and {gpus:g} GPUs (the largest "
                     f"has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs); lower --cpus-per-trial "
                     "or --gpus-per-trial")


def _trainable():
    from benchmark.grid.trial import tune_trainable

    return tune_trainable
