"""The processes a command starts, read from /proc: for tests that inspect what Ray runs."""
from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def parents() -> dict[int, int]:
    out = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = int(fields[1])
    return out


def descendants(root: int) -> set[int]:
    parents_of, found, grew = parents(), {root}, True
    while grew:
        more = {pid for pid, parent in parents_of.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
