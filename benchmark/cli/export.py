"""`bench export`: write one distilled set as .safetensors and a PNG grid."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli import args as flags
from core.errors import BenchError
from core.spec import parse_positive_ints


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a distilled set as .safetensors and a PNG grid")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--ipc", required=True)
    p.add_argument("--seed", type=flags.seed, default=0)
    p.add_argument("--out", default="exports")
    flags.add_paths(p)


def execute(args: argparse.Namespace) -> int:
    from benchmark.sets.export import export_set

    ipcs = parse_positive_ints(args.ipc, "--ipc")
    if len(ipcs) != 1:
        raise BenchError("--ipc takes one value for export")
    for path in export_set(args.method, args.dataset, ipcs[0], args.seed, flags.open_cache(args), Path(args.out)):
        print(path)
    return 0
