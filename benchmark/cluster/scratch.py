"""The embedded cluster's scratch space, and the cleanup of what a killed `bench run` left.

Ray keeps a session folder (sockets, logs, spilled objects) for every cluster it starts, and a
driver killed with ``kill -9`` leaves its cluster's processes and Tune's experiment folder
behind. Every embedded cluster of the harness lives in a folder of its own,
``$TMPDIR/bench-ray-*``, mode 0700 and owned by the driver's user, so nobody else can read or
change what is in it (Ray makes its own temp dir, ``ray/`` inside, world-writable; the private
folder around it keeps others out). The live driver holds an exclusive ``flock`` on the
folder's ``lock`` file for as long as it runs; the next `bench run` stops the processes of, and
removes, only a folder whose lock it can take, so no file's contents can make it kill a live run.
The ``driver`` file ("<pid> <start time>") is there for a person reading the folder.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

PREFIX = "bench-ray-"
OWNER = "driver"  # "<pid> <start time>" of the driver, for a person looking at the folder
LOCK = "lock"  # flock'ed by the live driver
RAY_DIR = "ray"  # Ray's temp dir (Ray chmods it 0777: it must stay inside the private folder)
TOKEN = "ray_auth_token"  # the embedded cluster's own authentication token, mode 0600
PROC = Path("/proc")
# Ray's socket paths under the folder must fit in the 107 bytes of a unix socket address
MAX_BASE = 40
# A folder without a lock file yet is being created; one older than this without a lock is
# a folder of an older harness or a broken one, and judged by its driver file
YOUNG_S = 60.0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart); None if gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie is gone too


def _private(folder: Path) -> bool:
    """A real folder (not a link) of this user that nobody else can write to or list."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _locked_by_someone(lock: Path) -> bool | None:
    """Whether a live process holds the folder's lock; None when there is no lock file."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot look: treat it as alive, never kill on a guess
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # held by its live driver (or unlockable: alive either way)
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def _owner_alive(folder: Path) -> bool:
    held = _locked_by_someone(folder / LOCK)
    if held is not None:
        return held
    # no lock: a folder being created this instant, or one of an older harness; its driver file
    # counts only if this user wrote it (the folder is private, so nobody else could have)
    try:
        owner = folder / OWNER
        if owner.lstat().st_uid != os.getuid():
            return True
        pid, started = owner.read_text().split()
        return _start_time(int(pid)) == started
    except (OSError, ValueError):
        return time.time() - folder.stat().st_mtime < YOUNG_S


def _uses(entry: Path, folder: str) -> bool:
    """Whether a process of this user names the folder in its command line or holds a file in it
    open (Ray's agents and workers rewrite their command lines, but write their logs there)."""
    try:
        if entry.stat().st_uid != os.getuid():
            return False  # never another user's process, whatever it names
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
        # only private folders of this user: another user's, a link planted in a shared /tmp, or a
        # folder others could have written to (so its files may lie) is left alone
        if not _private(folder):
            continue
        if not _owner_alive(folder):
            _remove(folder)
            removed += 1
    return removed


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Scratch:
    """``with Scratch() as folder``: a private scratch folder of this process, gone afterwards."""

    def __init__(self, base: Path | None = None):
        self.base = Path(base or tempfile.gettempdir())
        if len(str(self.base)) > MAX_BASE and Path("/tmp").is_dir():
            self.base = Path("/tmp")
        self.folder: Path | None = None
        self._lock_fd: int | None = None

    def __enter__(self) -> Path:
        clean_leftovers(self.base)
        # short on purpose: Ray's socket paths under it must stay within the 107 bytes of a unix socket
        folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.base))  # 0700
        # the lock is taken before it has its name, so no cleaner ever sees it unlocked
        fresh = folder / (LOCK + ".new")
        self._lock_fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        os.rename(fresh, folder / LOCK)
        _write_private(folder / OWNER, f"{os.getpid()} {_start_time(os.getpid())}")
        _write_private(folder / TOKEN, secrets.token_hex(32))
        self.folder = folder
        return folder

    def __exit__(self, *exc: object) -> None:
        if self.folder is not None:
            _remove(self.folder)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
