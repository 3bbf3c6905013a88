"""The embedded cluster's scratch space, and the cleanup of what a killed `bench run` left.

Ray keeps a session folder (sockets, logs, spilled objects) for every cluster it starts, and a
driver killed with ``kill -9`` leaves its cluster's processes and Tune's experiment folder
behind. Every embedded cluster of the harness lives in a folder of its own,
``$TMPDIR/bench-ray-*``, that names its driver (pid and start time). The folder is removed when
the run ends; the next `bench run` stops the processes of any folder whose driver is gone, and
removes the folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

PREFIX = "bench-ray-"
OWNER = "driver"  # the file naming the driver: "<pid> <start time>"
PROC = Path("/proc")
# Ray's socket paths under the folder must fit in the 107 bytes of a unix socket address
MAX_BASE = 40


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart); None if gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie is gone too


def _owner_alive(folder: Path) -> bool:
    try:
        pid, started = (folder / OWNER).read_text().split()
    except (OSError, ValueError):
        # no owner file yet: a folder being created this instant, or a broken one; judge by age
        return time.time() - folder.stat().st_mtime < 60
    return _start_time(int(pid)) == started


def _uses(entry: Path, folder: str) -> bool:
    """Whether a process names the folder in its command line or holds a file in it open (Ray's
    agents and workers rewrite their command lines, but write their logs there)."""
    try:
        if folder.encode() in (entry / "cmdline").read_bytes():
            return True
        for fd in (entry / "fd").iterdir():
            try:
                if os.readlink(fd).startswith(folder + os.sep):
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def _processes_using(folder: Path) -> list[int]:
    me = os.getpid()
    return [int(e.name) for e in PROC.glob("[0-9]*") if int(e.name) != me and _uses(e, str(folder))]


def _remove(folder: Path) -> None:
    for pid in _processes_using(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def clean_leftovers(base: Path | None = None) -> int:
    """Remove the scratch folders (and stop the processes) of drivers that died; returns how many."""
    base = Path(base or tempfile.gettempdir())
    removed = 0
    for folder in base.glob(f"{PREFIX}*"):
        # only real folders of this user: another user's, or a link planted in a shared /tmp, is left alone
        if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        if not _owner_alive(folder):
            _remove(folder)
            removed += 1
    return removed


class Scratch:
    """``with Scratch() as folder``: a scratch folder owned by this process, gone afterwards."""

    def __init__(self, base: Path | None = None):
        self.base = Path(base or tempfile.gettempdir())
        if len(str(self.base)) > MAX_BASE and Path("/tmp").is_dir():
            self.base = Path("/tmp")
        self.folder: Path | None = None

    def __enter__(self) -> Path:
        clean_leftovers(self.base)
        # short on purpose: Ray's socket paths under it must stay within the 107 bytes of a unix socket
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.base))
        (self.folder / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        return self.folder

    def __exit__(self, *exc: object) -> None:
        if self.folder is not None:
            _remove(self.folder)
