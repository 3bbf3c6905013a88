"""`bench results`: the rows of the result store (or its failed runs), as a table or JSON."""
from __future__ import annotations

import argparse
import json

from benchmark.cli import args as flags


def add_parser(sub) -> None:
    p = sub.add_parser("results", help="print the rows of the result store")
    p.add_argument("--json", action="store_true")
    p.add_argument("--errors", action="store_true", help="show failed runs instead")
    flags.add_paths(p)


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.relative import enriched_json

    with flags.open_store(args, readonly=True) as store:
        rows = store.errors() if args.errors else store.rows()
    if args.json:
        print(json.dumps(enriched_json(rows), indent=1))
        return 0
    from tabulate import tabulate

    if args.errors:
        table = [[r.method, r.dataset, r.ipc, r.arch, r.seed, (r.error or "").splitlines()[0]] for r in rows]
        print(tabulate(table, headers=["method", "dataset", "ipc", "arch", "seed", "error"]))
    else:
        table = [[r.method, r.dataset, "full" if r.ipc is None else r.ipc, r.arch, f"{r.protocol}/{r.budget}",
                  r.seed, f"{r.test_acc:.2f}"] for r in rows]
        print(tabulate(table, headers=["method", "dataset", "ipc", "arch", "protocol", "seed", "test_acc"]))
    return 0
