"""`bench plan`: the runs a `bench run` with the same arguments would do, what the store and the
cache already hold, and the estimated compute, without starting Ray or training anything."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from benchmark.cli import args as flags

if TYPE_CHECKING:
    from benchmark.grid.estimate import JobEstimate
    from benchmark.grid.plan import GridRequest
    from benchmark.store.results import ResultStore
    from core.artifacts import ArtifactCache


def _seconds(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _peak(job: JobEstimate) -> str:
    if job.runs_done == len(job.job.runs):
        return "-"  # nothing left to run
    return "unknown" if job.peak_gib is None else f"{job.peak_gib:.1f} GiB"


def summary(jobs: list[JobEstimate], cpus_per_trial: float, device: str) -> dict:
    """Totals of a plan: runs, what is done, estimated seconds of what is left and its wall time."""
    runs = sum(len(j.job.runs) for j in jobs)
    done = sum(j.runs_done for j in jobs)
    left = [j for j in jobs if j.runs_done < len(j.job.runs)]
    known = [j.seconds for j in left if j.seconds is not None]
    parallel = max(1, int((os.cpu_count() or 1) // cpus_per_trial)) if device == "cpu" else 1
    total = sum(known)
    peaks = [j.peak_gib for j in left if j.peak_gib is not None]
    return {"runs": runs, "in_store": done, "to_run": runs - done, "jobs_to_run": len(left),
            "peak_gib": round(max(peaks), 2) if peaks else None,
            "sets_cached": sum(j.set_cached for j in jobs), "estimated_s": round(total, 1),
            "unknown_jobs": len(left) - len(known), "device": device, "trials_at_once": parallel,
            "estimated_wall_s": round(total / parallel, 1)}


def show_plan(req: GridRequest, store: ResultStore, cache: ArtifactCache, cpus_per_trial: float, as_json: bool) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from benchmark.grid.estimate import estimate
    from benchmark.grid.plan import plan_runs
    from benchmark.store.studies import choices_in

    runs = plan_runs(req, choices=choices_in(store.root)).runs
    device = "cuda" if torch.cuda.is_available() else "cpu"
    jobs = estimate(runs, store.done_hashes(), store.rows(), cache, device)
    totals = summary(jobs, cpus_per_trial, device)
    if as_json:
        print(json.dumps({"jobs": [{"job": j.job.label(), "runs": len(j.job.runs), "in_store": j.runs_done,
                                    "set_cached": j.set_cached, "distill_s": j.distill_s, "train_s": j.train_s,
                                    "peak_gib": j.peak_gib}
                                   for j in jobs], "total": totals}, indent=1))
        return 0
    console = Console(soft_wrap=True)
    table = Table(title=Text(f"bench plan: {totals['runs']} runs in {len(jobs)} distillation jobs"))
    for column in ("job", "runs", "in store", "set cached", "distil", "students", "peak memory"):
        table.add_column(column, justify="left" if column == "job" else "right")
    for j in jobs:
        table.add_row(Text(j.job.label()), str(len(j.job.runs)), str(j.runs_done), "yes" if j.set_cached else "no",
                      _seconds(j.distill_s), _seconds(j.train_s),
                      _peak(j))
    console.print(table)
    console.print(Text(
        f"{totals['to_run']} of {totals['runs']} runs to do ({totals['in_store']} in the store, "
        f"{totals['sets_cached']} sets cached); estimated {_seconds(totals['estimated_s'])} of compute on {device}, "
        f"about {_seconds(totals['estimated_wall_s'])} with {totals['trials_at_once']} trials at once"
        + (f"; the largest trial peaks at about {totals['peak_gib']:.1f} GiB "
           f"({'GPU' if device == 'cuda' else 'resident'} memory)" if totals["peak_gib"] is not None else "")
        + (f"; {totals['unknown_jobs']} jobs have no measurement to estimate from (run one first)"
           if totals["unknown_jobs"] else "")
        + ". Building shared models (backbones, fine-tuning, EVLF, teachers) is not counted."))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="what `bench run` with the same arguments would do and cost; runs nothing")
    flags.add_grid(p)
    p.add_argument("--cpus-per-trial", type=flags.CPUS, default=1.0)
    p.add_argument("--json", action="store_true")
    flags.add_paths(p)


def execute(args) -> int:
    with flags.open_store(args, readonly=True) as store:
        return show_plan(flags.grid_request(args), store, flags.open_cache(args, readonly=True), args.cpus_per_trial,
                         args.json)
