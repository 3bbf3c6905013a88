"""`bench tune`: the same search, with the same budget, for every method.

For each method spec, one Ray Tune experiment searches the method's declared space
(`methods.registry.tuning_space`) with Optuna's TPE sampler (seeded, starting from the method's
own defaults when they lie in the space), ``trials`` candidates, and ASHA stopping candidates
whose validation accuracy trails at a scoring. Every candidate distils at the study's IPC and
trains the study's student under its protocol and budget, scored on the validation split only
(the test split is sealed, see `benchmark.tuning.candidate`). The study, with every trial's history,
goes to the store (`benchmark.store.studies`); ``name[tuned]`` then runs the chosen options.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.cluster.tune_events import driver_callback
from benchmark.grid.plan import protocol_config_of
from benchmark.store.studies import COMPLETE, FAILED, STOPPED, Study, TrialRecord
from benchmark.tuning.candidate import Candidate, sealed_dataset, tuning_trainable
from core.artifacts import ArtifactCache, content_key
from core.datasets import load_dataset
from core.errors import BenchError
from core.runs import HARNESS_VERSION
from core.search_space import Range, Space, describe_space
from core.spec import parse_named
from core.archs import ARCHS
from evaluators.evaluate import reported_score
from evaluators.protocols import resolve
from methods.registry import TUNED, MethodSpec, resolve_method, tuning_space

# the search every study uses; enters each study's key
SEARCH = {"searcher": "optuna-tpe", "scheduler": "asha", "grace_period": 1, "reduction_factor": 2}


@dataclass(frozen=True)
class TuneRequest:
    methods: tuple[str, ...]
    dataset: str
    ipc: int
    trials: int
    arch: str = "convnet3"
    protocol: str = "dc"
    budget: str = "quick"
    seed: int = 0  # the searcher's seed, the distillation's and the student's
    scorings: int = 4  # validation scorings per candidate: ASHA's rungs
    cpus_per_trial: float = 1.0
    fresh: bool = False


@dataclass(frozen=True)
class PlannedStudy:
    method: MethodSpec
    space: dict[str, Space]
    defaults: dict[str, Any] | None  # the method's own values of the space's options, if inside it
    key: str


def default_point(method: MethodSpec, space: dict[str, Space]) -> dict[str, Any] | None:
    """The method's own values of the tuned options (presets resolved), or None when one lies
    outside its range (the search then starts without them)."""
    owners = [getattr(method.distiller, "settings", method.distiller.options),
              *(p.options for p in method.distiller.plugins)]
    point = {}
    for name, dim in space.items():
        value = next(getattr(o, name) for o in owners if hasattr(o, name))
        if isinstance(dim, Range) and not (isinstance(value, (int, float)) and dim.contains(float(value))):
            return None
        point[name] = value
    return point


def plan_studies(req: TuneRequest) -> tuple[list[PlannedStudy], list[str]]:
    """The studies to run and the labels of methods with nothing to tune; every bad input is
    refused here, before any work."""
    if req.trials < 1:
        raise BenchError("--trials must be at least 1")
    protocol, budget = resolve(req.protocol, req.budget)
    if protocol.labels == "teacher":
        raise BenchError(f"protocol '{protocol.name}' relabels with a teacher; tune under a hard-label protocol "
                         "(dc or idc)")
    ARCHS.get(req.arch)
    data = load_dataset(req.dataset)
    planned, nothing = [], []
    for text in req.methods:
        if TUNED in parse_named(text).options:
            raise BenchError(f"'{text}' asks for a tuned choice; tune the spec without [{TUNED}]")
        method = resolve_method(text)
        method.distiller.validate(data, req.ipc)
        if method.distiller.reference:
            raise BenchError(f"'{method.label}' is the whole training split; there is nothing to tune")
        space = tuning_space(method)
        if not space:
            nothing.append(method.label)
            continue
        defaults = default_point(method, space)
        key = content_key({"method": method.label, "config": method.config(), "data": data.fingerprint(),
                           "ipc": req.ipc, "arch": req.arch, "protocol": protocol_config_of(protocol, budget),
                           "seed": req.seed, "trials": req.trials, "scorings": req.scorings,
                           "space": describe_space(space), "defaults": defaults, "search": SEARCH,
                           "harness_version": HARNESS_VERSION})
        planned.append(PlannedStudy(method, space, defaults, key))
    return planned, nothing


class TrialRecorder:
    """The driver's handler of trial events (`benchmark.cluster.tune_events`): each trial's
    scorings as they come, and how it ended."""

    def __init__(self, candidate: Candidate, on_trial: Callable[[TrialRecord], None]):
        self.candidate, self.on_trial = candidate, on_trial
        self.records: dict[str, TrialRecord] = {}
        self.final: dict[str, bool] = {}
        self.started: dict[str, float] = {}

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id not in self.records:
            drawn = {k: v for k, v in trial.config.items() if k in self.candidate.space}
            self.records[trial.trial_id] = TrialRecord(_trial_number(trial, len(self.records)),
                                                       self.candidate.option_text(drawn))
            self.started[trial.trial_id] = time.perf_counter()
        return self.records[trial.trial_id]

    def on_trial_start(self, trial) -> None:
        self._record(trial)

    def on_trial_result(self, trial, result) -> None:
        record = self._record(trial)
        record.scores.append((int(result["step"]), float(result["val_acc"])))
        self.final[trial.trial_id] = bool(result.get("final"))

    def _end(self, trial, status: str, error: str | None = None) -> None:
        record = self._record(trial)
        record.seconds = round(time.perf_counter() - self.started[trial.trial_id], 1)
        record.status, record.error = status, error
        if status == COMPLETE:  # what the candidate's student reports, as `score_on_validation` scores it
            protocol = resolve(self.candidate.protocol, self.candidate.budget)[0]
            record.objective = reported_score([v for _, v in record.scores], protocol)
        self.on_trial(record)

    def on_trial_complete(self, trial) -> None:
        self._end(trial, COMPLETE if self.final.get(trial.trial_id) else STOPPED)

    def on_trial_error(self, trial) -> None:
        self._end(trial, FAILED, _last_line(trial.error_file))


def _trial_number(trial: Any, fallback: int) -> int:
    """The order in which the searcher proposed the trial (Tune's tag starts with it, from 1)."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return int(head) - 1 if head.isdigit() else fallback


def _last_line(path: str | None) -> str:
    """The exception line of a trial's error file (its traceback's last line)."""
    try:
        lines = [line for line in open(path, encoding="utf-8").read().splitlines() if line.strip()] if path else []
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "the trial failed without an error file"


def final_step(req: TuneRequest, num_classes: int) -> int:
    """The student's last step for a set of ``req.ipc`` images per class (its final scoring)."""
    protocol, budget = resolve(req.protocol, req.budget)
    return protocol.schedule(budget, req.ipc * num_classes, req.ipc, num_classes).steps


def run_study(planned: PlannedStudy, req: TuneRequest, place: dict[str, Any], scratch: Any,
              on_trial: Callable[[TrialRecord], None]) -> Study:
    """One Ray Tune experiment (Ray is running; ``place``: `benchmark.cluster.artifacts.trial_places`);
    returns the study, not yet stored."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from benchmark.store.provenance import git_commit
    from benchmark.cluster.ray_session import quiet_tune
    from benchmark.grid.runner import check_fits
    from benchmark.grid.trial import distill_context

    quiet_tune()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = sealed_dataset(req.dataset)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # what every candidate shares (the backbone; the defaults' fine-tuned parts), once, here
    planned.method.distiller.prepare(data, distill_context(ArtifactCache(place["cache_root"]), device))
    spec = planned.method.spec
    candidate = Candidate(spec.name, dict(spec.options), planned.space, req.dataset, req.ipc, req.arch,
                          req.protocol, req.budget, req.seed, req.scorings, final_step(req, data.num_classes),
                          data.fingerprint(), place, threads=max(1, int(req.cpus_per_trial)))
    recorder = TrialRecorder(candidate, on_trial)
    searcher = OptunaSearch(seed=req.seed, points_to_evaluate=[planned.defaults] if planned.defaults else None)
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0  # a GPU per candidate where there are GPUs
    check_fits(ray.nodes(), req.cpus_per_trial, gpus)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // req.cpus_per_trial))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(tuning_trainable, candidate=candidate),
                            {"cpu": req.cpus_per_trial, "gpu": gpus}),
        param_space={name: dim.domain() for name, dim in planned.space.items()},
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", search_alg=searcher, num_samples=req.trials, max_concurrent_trials=slots,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=req.scorings,
                                    grace_period=SEARCH["grace_period"], reduction_factor=SEARCH["reduction_factor"])),
        run_config=tune.RunConfig(name=f"tune-{planned.key}", storage_path=str(scratch / "tune"), verbose=0,
                                  callbacks=[driver_callback(recorder)]),
    )
    tuner.fit()
    protocol, budget = resolve(req.protocol, req.budget)
    return Study(planned.key, planned.method.label, data.name, data.fingerprint(), req.ipc, req.arch, protocol.name,
                 budget.name, req.seed, describe_space(planned.space),
                 {**SEARCH, "trials": req.trials, "scorings": req.scorings, "starts_at_defaults": planned.defaults
                  is not None, "concurrent": slots},
                 sorted(recorder.records.values(), key=lambda t: t.number), git_commit(), time.time())
