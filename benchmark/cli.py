"""The `bench` command line: run grids, list registries, print results, write leaderboards,
export distilled sets. Bad input exits with code 2 and one line on stderr."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import BenchError
from core.spec import MAX_SEED, parse_int, parse_positive_ints, parse_seeds

EXIT_BAD_INPUT = 2
EXIT_RUNS_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BenchError(f"{message} (see '{self.prog} --help')")


def _seeds(text: str) -> tuple[int, ...]:
    return parse_seeds(text)


def _finite(low: float, high: float, what: str):
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


def _count(what: str, high: int):
    return lambda text: parse_int(text, what, 1, high)


def _seed(text: str) -> int:
    return parse_int(text, "--seed", 0, MAX_SEED)


# A trial below this share of a core is not worth scheduling (Ray would pack 1/x trials on a
# core, each one crawling); above MAX_TRIAL_CPUS no machine has it.
MIN_TRIAL_CPUS, MAX_TRIAL_CPUS, MAX_TRIAL_GPUS = 0.1, 1024.0, 64.0
CPUS = _finite(MIN_TRIAL_CPUS, MAX_TRIAL_CPUS, "--cpus-per-trial")
GPUS = _finite(0.0, MAX_TRIAL_GPUS, "--gpus-per-trial")


STORAGE_HELP = ("a directory every node of the cluster mounts at the same path: used as the cache by the driver and "
                "every trial, so nothing is transferred (default: trials on other nodes get the driver's artifacts "
                "through Ray)")


def _storage(args: argparse.Namespace) -> str | None:
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


def _add_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="result store directory (default $BENCH_STORE or ./bench-results)")
    p.add_argument("--cache", help="artifact cache directory (default $BENCH_CACHE or ~/.cache/evlf-bench)")


def _add_grid(p: argparse.ArgumentParser) -> None:
    """The arguments that say which grid to run (shared by `run` and `plan`): a grid file, and
    flags that replace its fields."""
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
    p.add_argument("--cpus-per-trial", type=CPUS, default=1.0)
    p.add_argument("--references", action=argparse.BooleanOptionalAction, default=None,
                   help="add (or, with --no-references, leave out) the random and full reference rows, the plug-in "
                        "variants' base rows and the decoding ceilings (default: the grid's)")


def _add_student_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack-students", choices=("auto", "always", "never"), default="auto",  # batching.STACKING
                   help="train a cell's seeds as one stacked model: auto (where trials get a GPU and the device "
                        "measures it faster), always, or never (default auto)")
    p.add_argument("--compile", choices=("auto", "always", "never"), default="auto",  # compiling.COMPILING
                   help="train students through torch.compile: auto (trainings long enough to repay it, where the "
                        "device measures it faster), always, or never (default auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="EVLF-Bench: a benchmark harness for dataset distillation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a grid (grids/default.toml with no arguments)")
    _add_grid(run)
    run.add_argument("--fresh", action="store_true", help="rerun runs that are already in the store")
    run.add_argument("--address", help="join an existing Ray cluster (host:port, ray://host:port or auto)")
    run.add_argument("--storage", help=STORAGE_HELP)
    run.add_argument("--gpus-per-trial", type=GPUS, default=None,
                     help="GPUs (or a fraction) per trial; default 1 when GPUs are visible, else 0")
    _add_student_training(run)
    run.add_argument("--no-leaderboard", action="store_true", help="do not print the table at the end")
    _add_paths(run)

    tn = sub.add_parser("tune", help="tune methods on the validation split (the same search and budget for each); "
                                     "then run 'name[tuned]'")
    tn.add_argument("--methods", required=True, help="comma list of method specs to tune, e.g. 'd4m,d4m+evlf'")
    tn.add_argument("--datasets", default="fashion-mnist", help="comma list of data sets (one study each)")
    tn.add_argument("--ipc", required=True, help="the images per class the candidates are scored at")
    tn.add_argument("--trials", type=_count("--trials", 10_000), required=True, help="candidates per method (the same for every method)")
    tn.add_argument("--arch", default="convnet3", help="the student that scores candidates")
    tn.add_argument("--protocol", default="dc")
    tn.add_argument("--budget", default="quick")
    tn.add_argument("--seed", type=_seed, default=0, help="the searcher's, the distillation's and the student's seed")
    tn.add_argument("--scorings", type=_count("--scorings", 1_000), default=4,
                    help="validation scorings per candidate, where ASHA may stop it (default 4)")
    tn.add_argument("--cpus-per-trial", type=CPUS, default=1.0)
    tn.add_argument("--fresh", action="store_true", help="run a study again although the store holds it")
    tn.add_argument("--address", help="join an existing Ray cluster (host:port, ray://host:port or auto)")
    tn.add_argument("--storage", help=STORAGE_HELP)
    _add_paths(tn)

    pl = sub.add_parser("plan", help="what `bench run` with the same arguments would do and cost; runs nothing")
    _add_grid(pl)
    pl.add_argument("--json", action="store_true")
    _add_paths(pl)

    lst = sub.add_parser("list", help="list registered names")
    lst.add_argument("what", choices=["methods", "variants", "plugins", "grids", "datasets", "archs", "protocols",
                                      "budgets"], help="grids: the named grid files (`bench run --grid NAME`)")
    lst.add_argument("--json", action="store_true")

    res = sub.add_parser("results", help="print the rows of the result store")
    res.add_argument("--json", action="store_true")
    res.add_argument("--errors", action="store_true", help="show failed runs instead")
    _add_paths(res)

    lb = sub.add_parser("leaderboard", help="write markdown leaderboards from the store")
    lb.add_argument("--out", default="leaderboards", help="output directory (default leaderboards/)")
    lb.add_argument("--no-samples", action="store_true", help="do not write sample-image grids")
    _add_paths(lb)

    ev = sub.add_parser("eval", help="score a distilled set made elsewhere (.safetensors file or image folders)")
    ev.add_argument("--data", required=True,
                    help="a .safetensors file (images, labels; what export writes) or a folder of class folders")
    ev.add_argument("--trust-pickle", action="store_true",
                    help="also read a .pt file (a pickle) with PyTorch's restricted loader")
    ev.add_argument("--dataset", default="fashion-mnist")
    ev.add_argument("--name", help="row name (default: the file or folder name)")
    ev.add_argument("--protocol", default="dc")
    ev.add_argument("--budget", default="quick")
    ev.add_argument("--archs", default="convnet3")
    ev.add_argument("--seeds", help="number of seeds or a comma list (default: the budget's)")
    ev.add_argument("--no-references", action="store_true")
    ev.add_argument("--address")
    ev.add_argument("--storage", help=STORAGE_HELP)
    ev.add_argument("--cpus-per-trial", type=CPUS, default=1.0)
    ev.add_argument("--gpus-per-trial", type=GPUS, default=None)
    _add_student_training(ev)
    ev.add_argument("--fresh", action="store_true")
    ev.add_argument("--no-leaderboard", action="store_true")
    _add_paths(ev)

    ex = sub.add_parser("export", help="write a distilled set as .safetensors and a PNG grid")
    ex.add_argument("--method", required=True)
    ex.add_argument("--dataset", default="fashion-mnist")
    ex.add_argument("--ipc", required=True)
    ex.add_argument("--seed", type=_seed, default=0)
    ex.add_argument("--out", default="exports")
    _add_paths(ex)

    pt = sub.add_parser("pretrain", help="train (or load) the small diffusion backbone of a data set and report on it")
    pt.add_argument("--dataset", default="fashion-mnist")
    pt.add_argument("--recipe", default="small", help="backbone recipe: small (default) or smoke (seconds, for tests)")
    pt.add_argument("--json", action="store_true")
    pt.add_argument("--cache", help="artifact cache directory (default $BENCH_CACHE or ~/.cache/evlf-bench)")
    sh = sub.add_parser("show", help="a method spec resolved (options, presets) and its plug-ins' diagnostics")
    sh.add_argument("method", help="a method spec, e.g. 'd4m+evlf'")
    sh.add_argument("--dataset", default="fashion-mnist")
    sh.add_argument("--json", action="store_true")
    sh.add_argument("--plot", help="write the plug-ins' loss curves to this PNG")
    sh.add_argument("--cache", help="artifact cache directory (default $BENCH_CACHE or ~/.cache/evlf-bench)")
    return parser


def _store(args: argparse.Namespace, readonly: bool = False):
    """The result store of ``--store`` (or the default); ``readonly`` for commands that only report."""
    from benchmark.store import ResultStore, default_store_root

    return ResultStore(args.store or default_store_root(), readonly=readonly)


def _cache(args: argparse.Namespace, readonly: bool = False):
    """The artifact cache of ``--cache`` (or the default); ``readonly`` for commands that only look in it."""
    from core.artifacts import ArtifactCache, default_cache_root

    return ArtifactCache(args.cache or default_cache_root(), readonly=readonly)


def _listed(value: str | None, flag: str, parse, default: tuple) -> tuple:
    """The parsed comma list of ``flag``, or ``default`` when the flag is absent; an empty list is
    refused (``--methods ''`` must not quietly mean the whole default grid)."""
    if value is None:
        return default
    if not value.replace(",", " ").strip():
        raise BenchError(f"{flag} is empty; give at least one value, or leave {flag} out for the default")
    return tuple(parse(value))


def _named(value: str | None, flag: str, default: str) -> str:
    """A flag naming one thing: its value, or ``default`` when absent; never an empty name."""
    if value is None:
        return default
    if not value.strip():
        raise BenchError(f"{flag} is empty; name one, or leave {flag} out for the default ({default})")
    return value.strip()


# a grid field -> the flag of `bench run` that replaces it
_GRID_FLAGS = {"methods": "methods", "datasets": "datasets", "ipc": "ipc", "archs": "archs", "protocol": "protocol",
               "budget": "budget", "seeds": "seeds", "references": "references"}


def _request(args: argparse.Namespace):
    """The grid a `bench run` (or `bench plan`) command line asks for: the grid file of ``--grid``
    (the 'default' grid without it), each field the command line gives replaced."""
    from benchmark.grid.files import load_grid, parse_archs, parse_datasets, parse_ipcs, parse_methods

    given = {key for key, flag in _GRID_FLAGS.items() if getattr(args, flag) is not None}
    g = load_grid(_named(args.grid, "--grid", "default"), replaced=given).request
    return dataclasses.replace(
        g,
        methods=_listed(args.methods, "--methods", lambda v: parse_methods([v]), g.methods),
        datasets=_listed(args.datasets, "--datasets", lambda v: parse_datasets([v]), g.datasets),
        ipcs=_listed(args.ipc, "--ipc", lambda v: parse_ipcs([v]), g.ipcs),
        archs=_listed(args.archs, "--archs", lambda v: parse_archs([v]), g.archs),
        protocol=_named(args.protocol, "--protocol", g.protocol),
        budget=_named(args.budget, "--budget", g.budget),
        seeds=_seeds(args.seeds) if args.seeds is not None else g.seeds,
        references=g.references if args.references is None else args.references,
    )


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(_request(args), args)


def cmd_plan(args: argparse.Namespace) -> int:
    from benchmark.plan_cli import show_plan

    with _store(args, readonly=True) as store:
        return show_plan(_request(args), store, _cache(args, readonly=True), args.cpus_per_trial, args.json)


def _execute(req, args: argparse.Namespace, before_run=None) -> int:
    """Plan ``req``, run it and print the summary and leaderboard (shared by run and eval)."""
    from rich.console import Console

    from benchmark.leaderboard import build_leaderboards, render_rich, render_rich_details
    from benchmark.plan import plan_runs
    from benchmark.studies import choices_in
    from rich.markup import escape

    from benchmark.ray_session import check_address, cluster_address
    from benchmark.runner import RunnerOptions, run_grid
    from core.artifacts import ArtifactCache

    from benchmark.store import default_store_root

    storage = _storage(args)
    address, origin = cluster_address(args.address)
    if address:
        check_address(address, origin)
    # planned before the store or the cache is made: bad input leaves nothing behind
    plan = plan_runs(req, choices=choices_in(Path(args.store or default_store_root()).expanduser()))
    store = _store(args)
    cache = ArtifactCache(storage) if storage else _cache(args)
    if before_run is not None:
        before_run(plan, cache)
    console = Console(soft_wrap=True)
    console.print(f"[bold]bench run[/]: {len(plan.runs)} runs " + escape(
                  f"({', '.join(req.methods)} on {', '.join(req.datasets)}, IPC {','.join(map(str, req.ipcs))}, "
                  f"{', '.join(req.archs)}, {req.protocol}/{req.budget}, seeds {','.join(str(s) for s in sorted({r.seed for r in plan.runs}))})"))
    summary = run_grid(plan.runs, store, RunnerOptions(
        cache_root=str(cache.root), address=address, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, fresh=args.fresh, shared_storage=storage is not None,
        stack_students=args.stack_students, compile_students=args.compile))
    if summary.elsewhere:
        holders = ", ".join(sorted(set(summary.elsewhere.values())))
        console.print(escape(f"{len(summary.elsewhere)} runs left to another bench run on this store that is doing "
                             f"them ({holders}); rerun when it ends to pick up any it did not finish"))
    if summary.not_done:
        print(f"bench: {_stopped_by()}: {summary.not_done} runs not done; {summary.ok} done and {len(summary.failed)} failed "
              f"are in the store ({store.path}): rerun the same command to resume", file=sys.stderr)
        return _stopped_code()
    if summary.skipped == summary.total:
        console.print(escape(f"all {summary.total} runs were already done (store: {store.path}); use --fresh to rerun"))
    else:
        retried = f", {summary.retried} trials retried after their worker died" if summary.retried else ""
        console.print(escape(f"{summary.ok} runs done, {summary.skipped} already in the store, "
                             f"{len(summary.failed)} failed{retried}, in {summary.seconds:.0f} s (store: {store.path})"))
    if not args.no_leaderboard:
        wanted = {r.run_hash for r in plan.runs}
        rows = [r for r in store.rows() if r.run_hash in wanted]
        for board in build_leaderboards(rows):
            console.print(render_rich(board))
            console.print(render_rich_details(board))
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} runs failed[/] (details: bench results --errors):")
        for line in summary.failed:
            console.print("  " + escape(line))
        return EXIT_RUNS_FAILED
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Check an external set, put it in the cache under its content key, and score it."""
    from benchmark.external_sets import content_hash, load_external
    from benchmark.grid.files import parse_archs
    from benchmark.plan import GridRequest
    from benchmark.trial import place_set
    from methods import resolve_method
    from core.datasets import canonical_dataset, load_dataset
    from core.runs import group_jobs

    args.dataset = canonical_dataset(args.dataset)
    data = load_dataset(args.dataset)
    dset, ipc = load_external(args.data, data, trust_pickle=args.trust_pickle)
    name = args.name or Path(args.data).expanduser().resolve().name.split(".")[0]
    if not name or any(ch in name for ch in "[],="):
        raise BenchError(f"--name '{name}' must be non-empty and free of '[', ']', ',' and '='")
    spec = f"external[name={name},sha256={content_hash(dset)}]"
    label = resolve_method(spec).label
    req = GridRequest(methods=(spec,), datasets=(args.dataset,), ipcs=(ipc,),
                      archs=_listed(args.archs, "--archs", lambda v: parse_archs([v]), ()),
                      protocol=args.protocol, budget=args.budget,
                      seeds=_seeds(args.seeds) if args.seeds is not None else None, references=not args.no_references)

    def place_in_cache(plan, cache) -> None:
        for job in group_jobs(plan.runs):
            if job.method == label:
                dset.meta["source"] = str(args.data)
                place_set(job, data, dset, cache)

    return _execute(req, args, before_run=place_in_cache)


def cmd_list(args: argparse.Namespace) -> int:
    from core.datasets import dataset_names
    from evaluators.archs import ARCHS
    from evaluators.protocols import PROTOCOLS
    from methods import METHODS

    if args.what == "grids":
        from benchmark.grid.files import grid_descriptions

        grids = grid_descriptions()
        if args.json:
            print(json.dumps([{"name": name, "description": text} for name, text in grids], indent=2))
        else:
            width = max((len(name) for name, _ in grids), default=0)
            print("\n".join(f"{name:<{width}}  {text}" for name, text in grids))
        return 0
    if args.what == "budgets":
        items = [{"protocol": p, "budget": b.name, "epochs": b.epochs, "full_steps": b.full_steps,
                  "seeds": b.seeds, "student_width": b.student_width, "description": b.description}
                 for p in PROTOCOLS.names() for b in PROTOCOLS.get(p).budgets.values()]
        if args.json:
            print(json.dumps(items, indent=2))
        else:
            for it in items:
                print(f"{it['protocol']}/{it['budget']}: {it['description']}")
        return 0
    from methods.plugins import PLUGINS
    from methods.registry import encoder_methods

    def variants() -> list[str]:  # every method a plug-in combines with, written as it is run
        return [f"{m}+{p}" for p in PLUGINS.names() for m in encoder_methods()]

    names = {"methods": METHODS.names, "datasets": dataset_names, "archs": ARCHS.names,
             "protocols": PROTOCOLS.names, "plugins": PLUGINS.names, "variants": variants}[args.what]()
    print(json.dumps(names) if args.json else "\n".join(names))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from benchmark.relative import enriched_json

    with _store(args, readonly=True) as store:
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


def _studies(root: Path) -> list:
    from benchmark.studies import StudyStore

    studies = StudyStore(root, readonly=True)
    try:
        return studies.all()
    finally:
        studies.close()


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from benchmark.leaderboard import write_leaderboards

    with _store(args, readonly=True) as store:
        rows = store.rows()
    if not rows:
        raise BenchError("the result store holds no finished runs yet; run 'bench run' first")
    out = Path(args.out)
    try:
        paths = write_leaderboards(rows, out, cache=None if args.no_samples else _cache(args, readonly=True),
                                   studies=_studies(store.root))
    except OSError as exc:
        raise BenchError(f"cannot write leaderboards to {out}: {exc.strerror or exc}") from None
    for p in paths:
        print(p)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.export import export_set

    ipcs = parse_positive_ints(args.ipc, "--ipc")
    if len(ipcs) != 1:
        raise BenchError("--ipc takes one value for export")
    for path in export_set(args.method, args.dataset, ipcs[0], args.seed, _cache(args), Path(args.out)):
        print(path)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from benchmark.pretrain_cli import run_pretrain

    return run_pretrain(args.dataset, args.recipe, _cache(args), args.json)


def cmd_show(args: argparse.Namespace) -> int:
    from benchmark.show_cli import cmd_show as show

    return show(args, _cache(args, readonly=True))


def cmd_tune(args: argparse.Namespace) -> int:
    from benchmark.tune_cli import cmd_tune as tune

    return tune(args)


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "eval": cmd_eval, "list": cmd_list, "results": cmd_results, "leaderboard": cmd_leaderboard,
            "export": cmd_export, "pretrain": cmd_pretrain, "show": cmd_show, "tune": cmd_tune}


# Settings that name a directory, read again by every trial in its own working directory (Ray
# Tune moves a trial into its log folder), so a relative one is made absolute here, once.
PATH_SETTINGS = ("BENCH_CACHE", "BENCH_STORE", "BENCH_FASHION_MNIST_DIR", "BENCH_IMAGEWOOF_ROOT",
                 "BENCH_IMAGENETTE_ROOT", "BENCH_IMAGEIDC_ROOT")
# Settings that name a local checkpoint directory or a hub id: absolute when such a path exists.
MODEL_SETTINGS = ("BENCH_SD15", "BENCH_DIT_XL_2_256", "BENCH_SD_VAE_FT_MSE")


def absolute_settings() -> None:
    for name in PATH_SETTINGS + MODEL_SETTINGS:
        value = os.environ.get(name)
        if value and (name in PATH_SETTINGS or Path(value).expanduser().exists()):
            os.environ[name] = str(Path(value).expanduser().resolve())


def _stopped_by() -> str:
    from benchmark.ray_session import terminated

    return "terminated (SIGTERM)" if terminated() else "interrupted"


def _stopped_code() -> int:
    from benchmark.ray_session import terminated

    return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    absolute_settings()
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"bench: {_stopped_by()}; finished runs are in the store, rerun to resume", file=sys.stderr)
        return _stopped_code()


if __name__ == "__main__":
    sys.exit(main())
