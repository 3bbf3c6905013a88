"""`bench tune`: run the tuning studies a command line asks for and print what each chose."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark.studies import COMPLETE, FAILED, STOPPED, Study, StudyStore, TrialRecord
from benchmark.tuning import TuneRequest, plan_studies, run_study
from core.artifacts import ArtifactCache
from core.errors import BenchError


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def summary_table(studies: list[Study]) -> Table:
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


def trial_line(label: str, t: TrialRecord) -> str:
    """One finished candidate as a progress line."""
    options = " ".join(f"{k}={v}" for k, v in t.options.items())
    if t.status == FAILED:
        return f"  {label} trial {t.number}: {options}: {t.status}: {t.error}"
    step, last = t.scores[-1] if t.scores else (0, None)
    return f"  {label} trial {t.number}: {options}: {t.status} at step {step}, validation {_fmt(last)} " \
           f"({t.seconds:.0f} s)"


def tune(req: TuneRequest, store_root: str, cache: ArtifactCache, console: Console, address: str | None = None,
         shared_storage: bool = False) -> list[Study]:
    """Plan every study (refusing bad input first), run those the store lacks, store each as it
    ends; on this machine's embedded Ray cluster, or on the one at ``address``."""
    from benchmark.cluster import trial_places
    from benchmark.ray_session import ray_session

    planned, nothing = plan_studies(req)
    for label in nothing:
        console.print(escape(f"{label}: no tunable options; its defaults are its only choice (run it as '{label}')"))
    store = StudyStore(store_root)
    studies: list[Study] = []
    todo = []
    for p in planned:
        found = None if req.fresh else store.get(p.key)
        if found is not None:
            console.print(escape(f"{p.method.label}: this study is in the store already (use --fresh to run it again)"))
            studies.append(found)
        else:
            todo.append(p)
    if todo:
        with ray_session(address) as session, \
                trial_places(cache, session.scratch.name, shared_storage, session.cluster) as place:
            for p in todo:
                space = ", ".join(f"{k} {v.describe()}" for k, v in sorted(p.space.items()))
                console.print(escape(f"{p.method.label}: {req.trials} trials over {space}"))
                study = run_study(p, req, place, session.scratch,
                                  lambda t, label=p.method.label: console.print(escape(trial_line(label, t))))
                store.put(study)
                studies.append(study)
    if studies:
        console.print(summary_table(studies))
    return studies


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmark.cli import _cache, _storage
    from benchmark.ray_session import check_address, cluster_address
    from benchmark.store import default_store_root
    from core.datasets import canonical_dataset
    from core.spec import parse_named_list, parse_positive_ints, split_top_level

    ipcs = parse_positive_ints(args.ipc, "--ipc")
    if len(ipcs) != 1:
        raise BenchError("--ipc takes one value for a tuning study (the chosen options are used at every IPC)")
    methods = tuple(s.canonical() for s in parse_named_list(args.methods))
    console = Console(soft_wrap=True)
    storage = _storage(args)
    cache = ArtifactCache(storage) if storage else _cache(args)
    address, origin = cluster_address(args.address)
    if address:
        check_address(address, origin)
    store_root = args.store or str(default_store_root())
    datasets = [canonical_dataset(d) for d in split_top_level(args.datasets)]
    if not datasets:
        raise BenchError("--datasets is empty; give at least one data set, or leave --datasets out for fashion-mnist")
    studies = []
    for dataset in datasets:
        req = TuneRequest(methods, dataset, ipcs[0], args.trials, args.arch, args.protocol, args.budget, args.seed,
                          args.scorings, args.cpus_per_trial, args.fresh)
        studies += tune(req, store_root, cache, console, address, storage is not None)
    return 0 if all(s.chosen is not None for s in studies) else 1
