"""The cleanup of a killed run's scratch folder removes only what such a run leaves."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark.scratch import OWNER, PREFIX, Scratch, clean_leftovers


def test_only_folders_of_dead_drivers_of_this_user_are_removed(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))  # short, as Ray's socket paths need
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = base / f"{PREFIX}gone"
    gone.mkdir()
    (gone / OWNER).write_text(f"{dead.pid} 1")  # its driver no longer runs
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (base / f"{PREFIX}link").symlink_to(victim, target_is_directory=True)  # planted in a shared /tmp
    with Scratch(base) as mine:  # a live run's own folder
        assert mine.is_dir() and not gone.exists()
        assert clean_leftovers(base) == 0 and mine.is_dir()
    assert not mine.exists()
    assert (victim / "keep").exists() and (base / f"{PREFIX}link").is_symlink()
    assert os.listdir(base) == [f"{PREFIX}link"]
    shutil.rmtree(base)
