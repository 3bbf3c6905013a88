"""`bench run`: run a grid (a grid file, with flags over its fields) and print its summary and
leaderboard; `execute_grid` is shared with `bench eval`."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from benchmark.cli import args as flags

if TYPE_CHECKING:
    from benchmark.grid.plan import GridRequest

HELP = "run a grid (grids/default.toml with no arguments)"


def add_parser(sub) -> None:
    p = sub.add_parser("run", help=HELP)
    flags.add_grid(p)
    flags.add_cluster(p)
    flags.add_execution(p)
    flags.add_paths(p)


def execute(args: argparse.Namespace) -> int:
    return execute_grid(flags.grid_request(args), args)


def _header(req: GridRequest, plan) -> str:
    seeds = ",".join(str(s) for s in sorted({r.seed for r in plan.runs}))
    return (f"{len(plan.runs)} runs ({', '.join(req.methods)} on {', '.join(req.datasets)}, IPC "
            f"{','.join(map(str, req.ipcs))}, {', '.join(req.archs)}, {req.protocol}/{req.budget}, seeds {seeds})")


def execute_grid(req: GridRequest, args: argparse.Namespace, before_run=None) -> int:
    """Run ``req`` through `benchmark.api.run` and print what it did (shared by run and eval)."""
    from rich.console import Console
    from rich.markup import escape

    from benchmark import api
    from benchmark.cli.stops import stopped_by, stopped_code
    from benchmark.report.leaderboard import build_leaderboards, render_rich, render_rich_details

    console = Console(soft_wrap=True)

    def announce(plan, cache) -> None:
        if before_run is not None:
            before_run(plan, cache)
        console.print("[bold]bench run[/]: " + escape(_header(req, plan)))

    where = api.Where(store=args.store, cache=args.cache, storage=flags.storage_dir(args), address=args.address)
    outcome = api.run(req, where, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                      fresh=args.fresh, stack_students=args.stack_students, compile_students=args.compile,
                      before_run=announce)
    summary, store = outcome.summary, outcome.store
    if summary.elsewhere:
        holders = ", ".join(sorted(set(summary.elsewhere.values())))
        console.print(escape(f"{len(summary.elsewhere)} runs left to another bench run on this store that is doing "
                             f"them ({holders}); rerun when it ends to pick up any it did not finish"))
    if summary.not_done:
        print(f"bench: {stopped_by()}: {summary.not_done} runs not done; {summary.ok} done and {len(summary.failed)} "
              f"failed are in the store ({store}): rerun the same command to resume", file=sys.stderr)
        return stopped_code()
    if summary.skipped == summary.total:
        console.print(escape(f"all {summary.total} runs were already done (store: {store}); use --fresh to rerun"))
    else:
        retried = f", {summary.retried} trials retried after their worker died" if summary.retried else ""
        console.print(escape(f"{summary.ok} runs done, {summary.skipped} already in the store, "
                             f"{len(summary.failed)} failed{retried}, in {summary.seconds:.0f} s (store: {store})"))
    if not args.no_leaderboard:
        for board in build_leaderboards(outcome.rows):
            console.print(render_rich(board))
            console.print(render_rich_details(board))
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} runs failed[/] (details: bench results --errors):")
        for line in summary.failed:
            console.print("  " + escape(line))
        return flags.EXIT_RUNS_FAILED
    return 0
