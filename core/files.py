"""Writing a file so that readers see the old content or the new one, never a torn mix."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What a plain open() would create: mkstemp's 0600 would keep a shared cache or store from the group.
FILE_MODE = 0o666 & ~_umask()


def write_atomic(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file in the same directory, fsync it, then rename it over ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a filesystem that refuses to open a directory is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
