"""The `bench` command line: one module per subcommand (``add_parser(sub)`` and
``execute(args) -> int``), the flag groups declared once in `benchmark.cli.args`. Bad input
exits with code 2 and one line on stderr; Ctrl-C with 130, SIGTERM with 143."""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.cli import eval as eval_cmd
from benchmark.cli import export, leaderboard, listing, plan, pretrain, results, run, show, tune
from benchmark.cli.args import EXIT_BAD_INPUT, Parser
from core.errors import BenchError

# in the order `bench --help` lists them
SUBCOMMANDS = (run, tune, plan, listing, results, leaderboard, eval_cmd, export, pretrain, show)


def build_parser() -> Parser:
    parser = Parser(prog="bench", description="EVLF-Bench: a benchmark harness for dataset distillation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
        # the subparser just added runs this module's `execute`
        sub.choices[list(sub.choices)[-1]].set_defaults(execute=module.execute)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    from benchmark.cli.stops import stopped_by, stopped_code

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    absolute_settings()
    try:
        args = build_parser().parse_args(argv)
        return args.execute(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"bench: {stopped_by()}; finished runs are in the store, rerun to resume", file=sys.stderr)
        return stopped_code()


if __name__ == "__main__":
    sys.exit(main())
