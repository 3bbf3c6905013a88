"""The cleanup of a killed run's scratch folder removes only what such a run leaves."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark.cluster.scratch import OWNER, PREFIX, Scratch, clean_leftovers


def test_only_folders_of_dead_drivers_of_this_user_are_removed(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))  # short, as Ray's socket paths need
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = base / f"{PREFIX}gone"
    gone.mkdir(mode=0o700)  # as the harness makes them
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


def test_a_live_runs_folder_is_private_and_no_file_in_it_can_get_the_run_killed(tmp_path):
    """The attack of a local user on a shared /tmp: rewrite the live run's ``driver`` file to
    name a dead process, so that the next `bench run` stops the live run's processes. The folder
    is 0700 (another user cannot even list it), and a live run holds its lock whatever the file
    says, so the cleanup leaves it and its processes alone."""
    base = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))
    os.chmod(base, 0o1777)  # a shared temp dir
    with Scratch(base) as live:
        assert live.stat().st_mode & 0o777 == 0o700
        worker = subprocess.Popen(["sh", "-c", "sleep 300", str(live / "ray")])  # names the folder, as Ray's do
        if os.getuid() == 0:  # as another user: the folder cannot be listed or written
            attack = subprocess.run(["sh", "-c", f"ls {live} || echo denied; echo '1 0' > {live}/{OWNER} || echo denied"],
                                    user=65534, capture_output=True, text=True)
            assert attack.stdout.split() == ["denied", "denied"], attack
        (live / OWNER).write_text("1 0")  # even were the file rewritten, the lock is not
        assert clean_leftovers(base) == 0
        assert worker.poll() is None and live.is_dir()
        worker.kill()
        worker.wait()
    # a folder that others could have written to is never acted on, whatever its files say
    loose = base / f"{PREFIX}loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    (loose / OWNER).write_text("1 0")
    assert clean_leftovers(base) == 0 and loose.is_dir()
    shutil.rmtree(base)
