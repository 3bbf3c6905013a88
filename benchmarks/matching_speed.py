"""Seconds per iteration of `dm` and `dc` against the original scripts' loops (the DC repository's
`main_DM.py` and `main.py`, run from a checkout the user gives), on the same data set, IPC and
network (Fashion-MNIST, ConvNet-3 of width 128, 256 real images per class), side by side in one run.

Usage: .venv/bin/python benchmarks/matching_speed.py --original DIR [--ipc 1] [--iterations 10,30]

``DIR`` is a checkout of github.com/VICO-UoE/DatasetCondensation (nothing of it is committed
here). Its scripts run in a subprocess, with this interpreter, from a temporary copy in which
two kinds of line are made to run on current PyTorch, with the same values: the Siamese
broadcast ``x[:] = x[0]`` of `utils.py` (ten lines; PyTorch 2 refuses the overlapping write)
becomes ``x[:] = x[0].clone()``, and the flattening ``out.view(out.size(0), -1)`` of
`networks.py` (an augmented batch may reach it non-contiguous) becomes ``.reshape``. Nothing
else is changed. Its data folder gets the
Fashion-MNIST files of the Debian package, unpacked where torchvision looks, so it never
downloads. Each side runs twice, at the two iteration counts, and the difference of the wall
times divided by the difference of the counts is its cost per iteration, free of start-up and
data loading; the original evaluates nothing (``--num_eval 0``). Prints one JSON object per
method: both costs and the ratio (original / harness: above 1, the harness is faster). Run it
alone on the cores.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmark.grid.trial import distill_context
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.datasets.fashion_mnist import DEBIAN_DIR
from methods import resolve_method

SCRIPTS = {"dm": ["main_DM.py"], "dc": ["main.py", "--method", "DC"]}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def original_data(root: Path) -> Path:
    """A data folder with Fashion-MNIST unpacked as torchvision's FashionMNIST reads it."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if not (raw / name).exists():
            with gzip.open(DEBIAN_DIR / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return root


# (file, line pattern, replacement): the two changes that let the 2021 code run on PyTorch 2
PATCHES = (("utils.py", re.compile(r"^([ \t]*)(\w+)\[:\] = \2\[0\][ \t]*$", re.M), r"\1\2[:] = \2[0].clone()"),
           ("networks.py", re.compile(r"\bout\.view\(out\.size\(0\), -1\)"), "out.reshape(out.size(0), -1)"))


def runnable_copy(original: Path, work: Path) -> Path:
    """A copy of the original's scripts with `PATCHES` applied (each must apply at least once)."""
    copy = work / "original"
    copy.mkdir(parents=True, exist_ok=True)
    for script in original.glob("*.py"):
        text = script.read_text()
        for name, pattern, replacement in PATCHES:
            if script.name == name:
                text, count = pattern.subn(replacement, text)
                if count == 0:
                    raise SystemExit(f"{script}: the line to patch is not there; is this the DatasetCondensation code?")
        (copy / script.name).write_text(text)
    return copy


def time_original(original: Path, method: str, ipc: int, iterations: int, work: Path) -> float:
    """Wall seconds of the original script at ``iterations`` (it runs ``iterations + 1``)."""
    save = work / f"save-{method}-{iterations}"
    save.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, *SCRIPTS[method], "--dataset", "FashionMNIST", "--model", "ConvNet", "--ipc", str(ipc),
               "--Iteration", str(iterations - 1), "--num_exp", "1", "--num_eval", "0", "--eval_mode", "M",
               "--data_path", str(original_data(work / "data")), "--save_path", str(save)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=original, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the original {SCRIPTS[method][0]} failed:\n{done.stderr[-2000:]}")
    return seconds


def time_harness(method: str, ipc: int, iterations: int, work: Path) -> float:
    """Wall seconds of the harness's method at ``iterations`` (paper settings otherwise)."""
    data = load_dataset("fashion-mnist")
    spec = f"{method}[iterations={iterations}]"
    distiller = resolve_method(spec).distiller
    distiller.validate(data, ipc)
    ctx = distill_context(ArtifactCache(work / f"cache-{method}-{iterations}"), torch.device("cpu"))
    start = time.perf_counter()
    distiller.distill(data, ipc, seed=0, ctx=ctx)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--original", required=True, help="a checkout of VICO-UoE/DatasetCondensation")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--iterations", default="10,30", help="the two iteration counts, e.g. 10,30")
    parser.add_argument("--methods", default="dm,dc")
    args = parser.parse_args()
    low, high = (int(v) for v in args.iterations.split(","))
    work = Path(tempfile.mkdtemp(prefix="matching-speed-"))
    original = runnable_copy(Path(args.original), work)
    for method in args.methods.split(","):
        harness = [time_harness(method, args.ipc, n, work) for n in (low, high)]
        timed = [time_original(original, method, args.ipc, n, work) for n in (low, high)]
        per_harness = (harness[1] - harness[0]) / (high - low)
        per_original = (timed[1] - timed[0]) / (high - low)
        print(json.dumps({"method": method, "dataset": "fashion-mnist", "ipc": args.ipc, "iterations": [low, high],
                          "threads": torch.get_num_threads(), "harness_s_per_iteration": round(per_harness, 4),
                          "original_s_per_iteration": round(per_original, 4),
                          "ratio": round(per_original / per_harness, 3), "harness_wall_s": harness,
                          "original_wall_s": timed}), flush=True)


if __name__ == "__main__":
    main()
