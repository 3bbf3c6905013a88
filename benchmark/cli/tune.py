"""`bench tune`: run the tuning studies a command line asks for and print what each chose."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from typing import TYPE_CHECKING

from benchmark.cli import args as flags
from core.errors import BenchError

if TYPE_CHECKING:
    from benchmark.store.studies import Study


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary_table(studies: list[Study]) -> Table:
    from benchmark.store.studies import COMPLETE, FAILED, STOPPED

    table = Table(title="bench tune: validation accuracy (%), defaults and tuned choice")
    for column in ("method", "data", "IPC", "trials (complete/stopped/failed)", "defaults", "chosen", "options"):
        table.add_column(column)
    for s in studies:
        counts = "/".join(str(sum(t.status == k for t in s.trials)) for k in (COMPLETE, STOPPED, FAILED))
        chosen, default = s.chosen, s.defaults
        options = ", ".join(f"{k}={v}" for k, v in chosen.options.items()) if chosen else "none completed"
        table.add_row(escape(s.method), s.dataset, str(s.ipc), counts,
                      _fmt(default.objective if default else None), _fmt(chosen.objective if chosen else None),
                      escape(options))
    return table


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune methods on the validation split (the same search and budget for each); "
                                    "then run 'name[tuned]'")
    p.add_argument("--methods", required=True, help="comma list of method specs to tune, e.g. 'd4m,d4m+evlf'")
    p.add_argument("--datasets", default="fashion-mnist", help="comma list of data sets (one study each)")
    p.add_argument("--ipc", required=True, help="the images per class the candidates are scored at")
    p.add_argument("--trials", type=flags.count("--trials", 10_000), required=True,
                   help="candidates per method (the same for every method)")
    p.add_argument("--arch", default="convnet3", help="the student that scores candidates")
    p.add_argument("--protocol", default="dc")
    p.add_argument("--budget", default="quick")
    p.add_argument("--seed", type=flags.seed, default=0, help="the searcher's, the distillation's and the student's seed")
    p.add_argument("--scorings", type=flags.count("--scorings", 1_000), default=4,
                   help="validation scorings per candidate, where ASHA may stop it (default 4)")
    flags.add_cluster(p, gpus=False)
    flags.add_paths(p)


def execute(args: argparse.Namespace) -> int:
    from benchmark import api
    from benchmark.tuning.search import TuneRequest
    from core.datasets import canonical_dataset
    from core.spec import parse_named_list, parse_positive_ints, split_top_level

    ipcs = parse_positive_ints(args.ipc, "--ipc")
    if len(ipcs) != 1:
        raise BenchError("--ipc takes one value for a tuning study (the chosen options are used at every IPC)")
    methods = tuple(s.canonical() for s in parse_named_list(args.methods))
    console = Console(soft_wrap=True)
    where = api.Where(store=args.store, cache=args.cache, storage=flags.storage_dir(args), address=args.address)
    datasets = [canonical_dataset(d) for d in split_top_level(args.datasets)]
    if not datasets:
        raise BenchError("--datasets is empty; give at least one data set, or leave --datasets out for fashion-mnist")
    studies = []
    for dataset in datasets:
        req = TuneRequest(methods, dataset, ipcs[0], args.trials, args.arch, args.protocol, args.budget, args.seed,
                          args.scorings, args.cpus_per_trial, args.fresh)
        studies += api.tune(req, where, lambda line: console.print(escape(line)))
    if studies:
        console.print(summary_table(studies))
    return 0 if all(s.chosen is not None for s in studies) else 1
