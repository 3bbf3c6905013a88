"""`make setup` helper: make sure the embedded default data set (Fashion-MNIST) is installed.

It installs the Debian package `dataset-fashion-mnist` when the files are missing and we are
root; otherwise it prints the exact command to run. It never fails the set-up: the harness
itself reports missing data with the same advice when a run needs it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
PACKAGE = "dataset-fashion-mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def installed() -> bool:
    user_dir = os.environ.get("BENCH_FASHION_MNIST_DIR")
    dirs = [Path(user_dir)] if user_dir else []
    return any(all((d / f).exists() for f in FILES) for d in dirs + [DEBIAN_DIR])


def main() -> int:
    if installed():
        return 0
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing the Debian package {PACKAGE} (Fashion-MNIST, 30 MB)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        ok = subprocess.run(["apt-get", "update", "-qq"], env=env).returncode == 0 and subprocess.run(
            ["apt-get", "install", "-y", "-qq", PACKAGE], env=env).returncode == 0
        if ok and installed():
            return 0
        print(f"warning: apt-get could not install {PACKAGE}", file=sys.stderr)
    print(f"Fashion-MNIST is missing: run 'sudo apt-get update && sudo apt-get install -y {PACKAGE}', "
          f"or set BENCH_FASHION_MNIST_DIR to a directory holding {', '.join(FILES)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
