"""The flags of `bench`, each group declared once (grid, paths, cluster, student training), the
argparse types that refuse bad values in one line, the exit codes, and the store, cache and
grid a command line names."""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from core.errors import BenchError
from core.spec import MAX_SEED, parse_int, parse_seeds

EXIT_BAD_INPUT = 2
EXIT_RUNS_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BenchError(f"{message} (see '{self.prog} --help')")


def seeds_of(text: str) -> tuple[int, ...]:
    return parse_seeds(text)


def finite(low: float, high: float, what: str):
    """An argparse type: a number in [low, high] (NaN and infinities are refused)."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # False for NaN
            raise BenchError(f"{what} must be a number from {low:g} to {high:g}, got '{text}'")
        return value
    return convert


def count(what: str, high: int):
    return lambda text: parse_int(text, what, 1, high)


def seed(text: str) -> int:
    return parse_int(text, "--seed", 0, MAX_SEED)


# A trial below this share of a core is not worth scheduling (Ray would pack 1/x trials on a
# core, each one crawling); above MAX_TRIAL_CPUS no machine has it.
MIN_TRIAL_CPUS, MAX_TRIAL_CPUS, MAX_TRIAL_GPUS = 0.1, 1024.0, 64.0
CPUS = finite(MIN_TRIAL_CPUS, MAX_TRIAL_CPUS, "--cpus-per-trial")
GPUS = finite(0.0, MAX_TRIAL_GPUS, "--gpus-per-trial")

STORAGE_HELP = ("a directory every node of the cluster mounts at the same path: used as the cache by the driver and "
                "every trial, so nothing is transferred (default: trials on other nodes get the driver's artifacts "
                "through Ray)")


def add_paths(p: argparse.ArgumentParser, store: bool = True) -> None:
    if store:
        p.add_argument("--store", help="result store directory (default $BENCH_STORE or ./bench-results)")
    p.add_argument("--cache", help="artifact cache directory (default $BENCH_CACHE or ~/.cache/evlf-bench)")


def add_cluster(p: argparse.ArgumentParser, gpus: bool = True) -> None:
    """Where the trials run and what each gets (`run`, `eval`, `tune`)."""
    p.add_argument("--address", help="join an existing Ray cluster (host:port, ray://host:port or auto)")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--cpus-per-trial", type=CPUS, default=1.0)
    if gpus:
        p.add_argument("--gpus-per-trial", type=GPUS, default=None,
                       help="GPUs (or a fraction) per trial; default 1 when GPUs are visible, else 0")
    p.add_argument("--fresh", action="store_true", help="run again what the store already holds")


def add_grid(p: argparse.ArgumentParser) -> None:
    """The arguments that say which grid to run (`run` and `plan`): a grid file, and flags that
    replace its fields."""
    p.add_argument("--grid", help="a named grid (`bench list grids`) or a .toml grid file (default: the 'default' "
                                  "grid); the flags below replace its fields")
    p.add_argument("--methods", help="comma list of method specs, e.g. 'random,herding[teacher_steps=500]'")
    p.add_argument("--datasets", help="comma list of data sets")
    p.add_argument("--ipc", help="comma list of images per class, e.g. 1,10,50")
    p.add_argument("--archs", help="comma list of student architectures")
    p.add_argument("--protocol", default=None, help="evaluation protocol")
    p.add_argument("--budget", default=None, help="protocol budget: paper, quick or smoke")
    p.add_argument("--seeds", help="number of seeds (N means 0..N-1) or a comma list (default: the grid's, else "
                                   "the budget's)")
    p.add_argument("--references", action=argparse.BooleanOptionalAction, default=None,
                   help="add (or, with --no-references, leave out) the random and full reference rows, the plug-in "
                        "variants' base rows and the decoding ceilings (default: the grid's)")


def add_execution(p: argparse.ArgumentParser) -> None:
    """How a grid's students train and what is printed at the end (`run`, `eval`)."""
    p.add_argument("--stack-students", choices=("auto", "always", "never"), default="auto",  # batching.STACKING
                   help="train a cell's seeds as one stacked model: auto (where trials get a GPU and the device "
                        "measures it faster), always, or never (default auto)")
    p.add_argument("--compile", choices=("auto", "always", "never"), default="auto",  # compiling.COMPILING
                   help="train students through torch.compile: auto (trainings long enough to repay it, where the "
                        "device measures it faster), always, or never (default auto)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the table at the end")


def store_root(args: argparse.Namespace) -> Path:
    """The result store directory of ``--store`` (or the default), not opened."""
    from benchmark.store.results import default_store_root

    return Path(args.store).expanduser() if getattr(args, "store", None) else default_store_root()


def open_store(args: argparse.Namespace, readonly: bool = False):
    """The result store of ``--store`` (or the default); ``readonly`` for commands that only report."""
    from benchmark.store.results import ResultStore

    return ResultStore(store_root(args), readonly=readonly)


def open_cache(args: argparse.Namespace, readonly: bool = False):
    """The artifact cache of ``--cache`` (or the default); ``readonly`` for commands that only look in it."""
    from core.artifacts import ArtifactCache, default_cache_root

    return ArtifactCache(args.cache or default_cache_root(), readonly=readonly)


def storage_dir(args: argparse.Namespace) -> str | None:
    """The shared storage directory of ``--storage``, absolute; refuses what it cannot be."""
    value = getattr(args, "storage", None)
    if value is None:
        return None
    if value.startswith("file://"):
        value = value[len("file://"):]
    elif "://" in value:
        raise BenchError(f"--storage takes a directory that every node mounts at the same path, not '{value}'; "
                         "mount the bucket (s3fs, gcsfuse) and pass the mount point")
    if args.cache:
        raise BenchError("give --cache or --storage, not both: with --storage the shared directory is the cache")
    return str(Path(value).expanduser().resolve())


def trial_cache(args: argparse.Namespace):
    """The cache trials read and write: the shared ``--storage`` directory, else ``--cache``."""
    from core.artifacts import ArtifactCache

    storage = storage_dir(args)
    return ArtifactCache(storage) if storage else open_cache(args)


def listed(value: str | None, flag: str, parse, default: tuple) -> tuple:
    """The parsed comma list of ``flag``, or ``default`` when the flag is absent; an empty list is
    refused (``--methods ''`` must not quietly mean the whole default grid)."""
    if value is None:
        return default
    if not value.replace(",", " ").strip():
        raise BenchError(f"{flag} is empty; give at least one value, or leave {flag} out for the default")
    return tuple(parse(value))


def named(value: str | None, flag: str, default: str) -> str:
    """A flag naming one thing: its value, or ``default`` when absent; never an empty name."""
    if value is None:
        return default
    if not value.strip():
        raise BenchError(f"{flag} is empty; name one, or leave {flag} out for the default ({default})")
    return value.strip()


# a grid field -> the attribute of the flag of `bench run` that replaces it
GRID_FLAGS = {"methods": "methods", "datasets": "datasets", "ipc": "ipc", "archs": "archs", "protocol": "protocol",
              "budget": "budget", "seeds": "seeds", "references": "references"}


def grid_request(args: argparse.Namespace):
    """The grid a `bench run` (or `bench plan`) command line asks for: the grid file of ``--grid``
    (the 'default' grid without it), each field the command line gives replaced."""
    from benchmark.grid.files import load_grid, parse_archs, parse_datasets, parse_ipcs, parse_methods

    given = {key for key, flag in GRID_FLAGS.items() if getattr(args, flag) is not None}
    g = load_grid(named(args.grid, "--grid", "default"), replaced=given).request
    return dataclasses.replace(
        g,
        methods=listed(args.methods, "--methods", lambda v: parse_methods([v]), g.methods),
        datasets=listed(args.datasets, "--datasets", lambda v: parse_datasets([v]), g.datasets),
        ipcs=listed(args.ipc, "--ipc", lambda v: parse_ipcs([v]), g.ipcs),
        archs=listed(args.archs, "--archs", lambda v: parse_archs([v]), g.archs),
        protocol=named(args.protocol, "--protocol", g.protocol),
        budget=named(args.budget, "--budget", g.budget),
        seeds=seeds_of(args.seeds) if args.seeds is not None else g.seeds,
        references=g.references if args.references is None else args.references,
    )
