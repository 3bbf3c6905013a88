"""`bench leaderboard`: write the markdown pages (one per data set, protocol and budget), the
plots and sample grids, from the store's rows."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli import args as flags
from core.errors import BenchError


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="write markdown leaderboards from the store")
    p.add_argument("--out", default="leaderboards", help="output directory (default leaderboards/)")
    p.add_argument("--no-samples", action="store_true", help="do not write sample-image grids")
    flags.add_paths(p)


def _studies(root: Path) -> list:
    from benchmark.store.studies import StudyStore

    studies = StudyStore(root, readonly=True)
    try:
        return studies.all()
    finally:
        studies.close()


def execute(args: argparse.Namespace) -> int:
    from benchmark.report.leaderboard import write_leaderboards

    with flags.open_store(args, readonly=True) as store:
        rows = store.rows()
    if not rows:
        raise BenchError("the result store holds no finished runs yet; run 'bench run' first")
    out = Path(args.out)
    try:
        paths = write_leaderboards(rows, out, cache=None if args.no_samples else flags.open_cache(args, readonly=True),
                                   studies=_studies(store.root))
    except OSError as exc:
        raise BenchError(f"cannot write leaderboards to {out}: {exc.strerror or exc}") from None
    for p in paths:
        print(p)
    return 0
