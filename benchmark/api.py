"""The harness as a library: `run` a grid and `tune` methods from Python, with typed results.
The `bench` command prints what these return; `benchmarks/*.py` call them directly.

    from benchmark import api
    print(api.estimate("default").totals)             # what `bench plan` prints, as data
    outcome = api.run("default")                      # a named grid, a .toml path or a GridRequest
    for row in outcome.rows:
        print(row.method, row.ipc, row.test_acc)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.grid.estimate import JobEstimate, StageEstimate
from benchmark.grid.plan import GridRequest, Plan, plan_runs
from benchmark.grid.runner import RunnerOptions, RunSummary, run_grid
from benchmark.store.results import ResultStore, default_store_root
from benchmark.store.studies import Study, StudyStore, choices_in
from core.artifacts import ArtifactCache, default_cache_root
from core.rows import ResultRow

# called with the plan and the trials' cache once the grid is planned, before any trial starts
BeforeRun = Callable[[Plan, ArtifactCache], None]


@dataclass(frozen=True)
class RunOutcome:
    """What `run` did: the plan, the runner's counts, and the store's finished rows of the plan."""

    plan: Plan
    summary: RunSummary
    rows: list[ResultRow]
    store: Path  # the store's database file


@dataclass(frozen=True)
class Where:
    """Where a run keeps its results and artifacts and where its trials run. ``storage``: a
    directory every node of a cluster mounts (then the cache); ``address``: a Ray cluster to join."""

    store: str | Path | None = None
    cache: str | Path | None = None
    storage: str | None = None
    address: str | None = None

    def store_root(self) -> Path:
        return Path(self.store).expanduser() if self.store else default_store_root()

    def trial_cache(self) -> ArtifactCache:
        return ArtifactCache(self.storage or self.cache or default_cache_root())

    def cluster(self) -> str | None:
        """The Ray address to join (``--address``, else ``$RAY_ADDRESS``), checked; None: embedded."""
        from benchmark.cluster.ray_session import check_address, cluster_address

        address, origin = cluster_address(self.address)
        if address:
            check_address(address, origin)
        return address


def grid_of(grid: GridRequest | str) -> GridRequest:
    """A request as given, or the grid file it names."""
    if isinstance(grid, GridRequest):
        return grid
    from benchmark.grid.files import load_grid

    return load_grid(grid).request


def plan(grid: GridRequest | str, where: Where = Where()) -> Plan:
    """The runs of ``grid``, every name and size checked (`BenchError` on the first bad input);
    ``name[tuned]`` specs take the choices of the studies in the store."""
    return plan_runs(grid_of(grid), choices=choices_in(where.store_root()))


@dataclass(frozen=True)
class PlanEstimate:
    """What `bench plan` prints: every job with what is done and its estimated seconds, the totals
    (`benchmark.grid.estimate.plan_totals`) and the device kind the estimate is for."""

    jobs: list[JobEstimate]
    totals: dict
    device: str
    stages: list[StageEstimate]  # what the driver builds before the trials (cached or not)
    calibration: str | None  # the machine and commit the shipped calibration was measured on, if used


def estimate(grid: GridRequest | str, where: Where = Where(), cpus_per_trial: float = 1.0, *,
             store: ResultStore | None = None, cache: ArtifactCache | None = None,
             calibrated: bool = True) -> PlanEstimate:
    """The plan of ``grid`` against the store and the cache, read-only: nothing is run or written;
    ``calibrated`` False estimates from the store's rows alone, without the shipped calibration."""
    import torch

    from benchmark.grid.calibration import shipped
    from benchmark.grid.estimate import estimate as estimate_jobs, plan_totals

    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = plan(grid, where).runs
    own = store is None
    store = ResultStore(where.store_root(), readonly=True) if own else store
    try:
        cache = cache if cache is not None else ArtifactCache(where.storage or where.cache or default_cache_root(),
                                                              readonly=True)
        calibration = shipped() if calibrated else None
        jobs, stages = estimate_jobs(runs, store.done_hashes(), store.rows(), cache, device,
                                     None if calibration is None else calibration.model())
        return PlanEstimate(jobs, plan_totals(jobs, stages, cpus_per_trial, device), device, stages,
                            None if calibration is None else calibration.describe())
    finally:
        if own:
            store.close()


def run(grid: GridRequest | str, where: Where = Where(), *, cpus_per_trial: float = 1.0,
        gpus_per_trial: float | None = None, fresh: bool = False, stack_students: str = "auto",
        compile_students: str = "auto", before_run: BeforeRun | None = None) -> RunOutcome:
    """Plan ``grid`` (before the store or cache is made: bad input leaves nothing behind), run what
    the store lacks on Ray, and return the plan's rows."""
    address = where.cluster()
    planned = plan(grid, where)
    store = ResultStore(where.store_root())
    try:
        cache = where.trial_cache()
        if before_run is not None:
            before_run(planned, cache)
        summary = run_grid(planned.runs, store, RunnerOptions(
            cache_root=str(cache.root), address=address, cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial, fresh=fresh, shared_storage=where.storage is not None,
            stack_students=stack_students, compile_students=compile_students))
        wanted = {r.run_hash for r in planned.runs}
        return RunOutcome(planned, summary, [r for r in store.rows() if r.run_hash in wanted], store.path)
    finally:
        store.close()


def tune(request, where: Where = Where(), say: Callable[[str], None] = lambda line: None) -> list[Study]:
    """Plan every study of a `benchmark.tuning.search.TuneRequest` (refusing bad input first), run
    those the store lacks and store each as it ends; ``say`` gets one line per event."""
    from benchmark.cluster.artifacts import trial_places
    from benchmark.cluster.ray_session import ray_session
    from benchmark.tuning.search import plan_studies, run_study

    address = where.cluster()
    planned, nothing = plan_studies(request)
    for label in nothing:
        say(f"{label}: no tunable options; its defaults are its only choice (run it as '{label}')")
    store = StudyStore(where.store_root())
    try:
        studies: list[Study] = []
        todo = []
        for p in planned:
            found = None if request.fresh else store.get(p.key)
            if found is not None:
                say(f"{p.method.label}: this study is in the store already (use --fresh to run it again)")
                studies.append(found)
            else:
                todo.append(p)
        if todo:
            cache = where.trial_cache()
            with ray_session(address) as session, \
                    trial_places(cache, session.scratch.name, where.storage is not None, session.cluster) as place:
                for p in todo:
                    space = ", ".join(f"{k} {v.describe()}" for k, v in sorted(p.space.items()))
                    say(f"{p.method.label}: {request.trials} trials over {space}")
                    study = run_study(p, request, place, session.scratch,
                                      lambda t, label=p.method.label: say(trial_line(label, t)))
                    store.put(study)
                    studies.append(study)
        return studies
    finally:
        store.close()


def trial_line(label: str, t) -> str:
    """One finished tuning candidate (a `TrialRecord`) as a progress line."""
    from benchmark.store.studies import FAILED

    options = " ".join(f"{k}={v}" for k, v in t.options.items())
    if t.status == FAILED:
        return f"  {label} trial {t.number}: {options}: {t.status}: {t.error}"
    step, last = t.scores[-1] if t.scores else (0, None)
    shown = "–" if last is None else f"{last:.2f}"
    return f"  {label} trial {t.number}: {options}: {t.status} at step {step}, validation {shown} ({t.seconds:.0f} s)"
