"""Faults survived: a trial whose worker process is killed mid-run is started again; the grid
finishes with every run in the store once, none lost, none doubled."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from procs import cmdline, descendants

TRIAL = "ray::ImplicitFunc.train"  # the process title of a Tune function trial while it runs


def test_a_worker_killed_mid_trial_is_retried_with_nothing_lost_or_doubled(bench_env):
    store, _ = bench_env
    run = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "--methods", "random", "--datasets", "digits",
                            "--ipc", "1,2,3", "--archs", "convnet3", "--seeds", "2", "--budget", "smoke",
                            "--no-references", "--no-leaderboard"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while run.poll() is None and killed is None and time.monotonic() < deadline:
        for pid in descendants(run.pid):
            if cmdline(pid).startswith(TRIAL):
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.05)
    out, err = run.communicate(timeout=300)
    assert killed is not None, "no trial was caught running"
    assert run.returncode == 0, err[-3000:]
    assert "trials retried after their worker died" in out and "0 failed" in out
    listed = subprocess.run([sys.executable, "-m", "benchmark.cli", "results", "--json", "--store", str(store)],
                            capture_output=True, text=True, timeout=120)
    rows = json.loads(listed.stdout)
    assert len(rows) == 6 and len({r["run_hash"] for r in rows}) == 6  # 3 IPCs x 2 seeds, once each
    assert all(r["status"] == "ok" for r in rows)


def test_corruption_found_inside_a_trial_is_reported_on_the_console(bench_env):
    """A cached set damaged on disk is found by the trial that loads it: the user sees it on the
    driver's console (not only in a worker's log), and the set is rebuilt."""
    _, cache = bench_env
    grid = ["run", "--methods", "random", "--datasets", "digits", "--ipc", "1", "--archs", "convnet3", "--seeds", "1",
            "--budget", "smoke", "--no-references", "--no-leaderboard"]
    first = subprocess.run([sys.executable, "-m", "benchmark.cli", *grid], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (stored,) = (cache / "distilled").glob("*.safetensors")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    again = subprocess.run([sys.executable, "-m", "benchmark.cli", *grid, "--fresh"], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "warning random" in again.stderr and "is corrupted (its sha256 does not match the sidecar)" in again.stderr
    assert stored.exists()  # rebuilt
