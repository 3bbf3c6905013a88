"""`bench eval`: check a distilled set made elsewhere, place it in the cache under its content
key, and score it as a grid of one method."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli import args as flags
from core.errors import BenchError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a distilled set made elsewhere (.safetensors file or image folders)")
    p.add_argument("--data", required=True,
                   help="a .safetensors file (images, labels; what export writes) or a folder of class folders")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also read a .pt file (a pickle) with PyTorch's restricted loader")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--name", help="row name (default: the file or folder name)")
    p.add_argument("--protocol", default="dc")
    p.add_argument("--budget", default="quick")
    p.add_argument("--archs", default="convnet3")
    p.add_argument("--seeds", help="number of seeds or a comma list (default: the budget's)")
    p.add_argument("--no-references", action="store_true")
    flags.add_cluster(p)
    flags.add_execution(p)
    flags.add_paths(p)


def execute(args: argparse.Namespace) -> int:
    from benchmark.cli.run import execute_grid
    from benchmark.grid.files import parse_archs
    from benchmark.grid.plan import GridRequest
    from benchmark.grid.trial import place_set
    from benchmark.sets.external import content_hash, load_external
    from core.datasets import canonical_dataset, load_dataset
    from core.runs import group_jobs
    from methods import resolve_method

    args.dataset = canonical_dataset(args.dataset)
    data = load_dataset(args.dataset)
    dset, ipc = load_external(args.data, data, trust_pickle=args.trust_pickle)
    name = args.name or Path(args.data).expanduser().resolve().name.split(".")[0]
    if not name or any(ch in name for ch in "[],="):
        raise BenchError(f"--name '{name}' must be non-empty and free of '[', ']', ',' and '='")
    spec = f"external[name={name},sha256={content_hash(dset)}]"
    label = resolve_method(spec).label
    req = GridRequest(methods=(spec,), datasets=(args.dataset,), ipcs=(ipc,),
                      archs=flags.listed(args.archs, "--archs", lambda v: parse_archs([v]), ()),
                      protocol=args.protocol, budget=args.budget,
                      seeds=flags.seeds_of(args.seeds) if args.seeds is not None else None,
                      references=not args.no_references)

    def place_in_cache(plan, cache) -> None:
        for job in group_jobs(plan.runs):
            if job.method == label:
                dset.meta["source"] = str(args.data)
                place_set(job, data, dset, cache)

    return execute_grid(req, args, before_run=place_in_cache)
