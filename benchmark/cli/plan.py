"""`bench plan`: the runs a `bench run` with the same arguments would do, what the store and the
cache already hold, and the estimated compute, without starting Ray or training anything."""
from __future__ import annotations

import json
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


def show_plan(req: GridRequest, store: ResultStore, cache: ArtifactCache, cpus_per_trial: float, as_json: bool,
              calibrated: bool = True) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from benchmark import api

    planned = api.estimate(req, api.Where(store=store.root), cpus_per_trial, store=store, cache=cache,
                           calibrated=calibrated)
    jobs, totals, device = planned.jobs, planned.totals, planned.device
    if as_json:
        print(json.dumps({"jobs": [{"job": j.job.label(), "runs": len(j.job.runs), "in_store": j.runs_done,
                                    "set_cached": j.set_cached, "distill_s": j.distill_s, "train_s": j.train_s,
                                    "peak_gib": j.peak_gib}
                                   for j in jobs],
                          "shared": [{"stage": s.stage.name, "dataset": s.stage.dataset, "cached": s.cached,
                                      "seconds": s.seconds} for s in planned.stages],
                          "calibration": planned.calibration, "total": totals}, indent=1))
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
    if planned.stages:
        shared = Table(title=Text("shared stages, built in the driver before the trials"))
        for column in ("stage", "data set", "cached", "build"):
            shared.add_column(column, justify="right" if column == "build" else "left")
        for st in planned.stages:
            shared.add_row(Text(st.stage.name), Text(st.stage.dataset), "yes" if st.cached else "no",
                           "-" if st.cached else _seconds(st.seconds))
        console.print(shared)
    console.print(Text(
        f"{totals['to_run']} of {totals['runs']} runs to do ({totals['in_store']} in the store, "
        f"{totals['sets_cached']} sets cached); estimated {_seconds(totals['estimated_s'])} of compute on {device}, "
        f"about {_seconds(totals['estimated_wall_s'])} with {totals['trials_at_once']} trials at once"
        + (f"; the largest trial peaks at about {totals['peak_gib']:.1f} GiB "
           f"({'GPU' if device == 'cuda' else 'resident'} memory)" if totals["peak_gib"] is not None else "")
        + (f"; {totals['unknown_jobs']} jobs have no measurement to estimate from (run one first)"
           if totals["unknown_jobs"] else "")
        + f". Of it, {totals['shared_to_build']} of {totals['shared_stages']} shared stages to build first: "
          f"{_seconds(totals['shared_s'])}"
        + (f" ({totals['unknown_shared']} never measured, not counted)" if totals["unknown_shared"] else "")
        + ". " + (f"Costs the store lacks come from the calibration measured on {planned.calibration}."
                  if planned.calibration else "Estimated from the store alone (no calibration).")))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="what `bench run` with the same arguments would do and cost; runs nothing")
    flags.add_grid(p)
    p.add_argument("--cpus-per-trial", type=flags.CPUS, default=1.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-calibration", dest="calibrated", action="store_false",
                   help="estimate from the store's rows alone, not the calibration shipped with the harness")
    flags.add_paths(p)


def execute(args) -> int:
    with flags.open_store(args, readonly=True) as store:
        return show_plan(flags.grid_request(args), store, flags.open_cache(args, readonly=True), args.cpus_per_trial,
                         args.json, args.calibrated)
