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


def test_a_driver_killed_mid_grid_loses_nothing_and_the_next_run_cleans_what_it_left(bench_env):
    """``kill -9`` of `bench run` while trials run: the rerun does only the missing runs, and
    stops the Ray processes and removes the folders the killed one left."""
    import shutil
    import sqlite3
    import tempfile
    from pathlib import Path

    from benchmark.cluster.scratch import _start_time

    store, _ = bench_env
    base = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))  # short: Ray's socket paths live under it
    env = dict(os.environ, TMPDIR=str(base))
    grid = [sys.executable, "-m", "benchmark.cli", "run", "--methods", "random", "--datasets", "digits", "--ipc",
            "1,2,3,4", "--archs", "convnet3", "--seeds", "2", "--budget", "smoke", "--no-references", "--no-leaderboard"]
    run = subprocess.Popen(grid, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, finished = time.monotonic() + 240, 0
    while not finished and time.monotonic() < deadline and run.poll() is None:
        try:
            with sqlite3.connect(store / "bench.sqlite3") as conn:
                finished = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    family = {pid: _start_time(pid) for pid in descendants(run.pid) - {run.pid}}
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert finished and run.returncode == -signal.SIGKILL
    results = [sys.executable, "-m", "benchmark.cli", "results", "--json", "--store", str(store)]
    before = {r["run_hash"]: r["created_at"] for r in json.loads(subprocess.run(results, capture_output=True,
                                                                                   text=True).stdout)}
    assert 1 <= len(before) < 8 and list(base.glob("bench-ray-*"))  # the killed run left its folder
    again = subprocess.run(grid, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{8 - len(before)} runs done, {len(before)} already in the store" in again.stdout
    rows = json.loads(subprocess.run(results, capture_output=True, text=True).stdout)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)  # 4 IPCs x 2 seeds: none lost, none twice
    assert all(r["created_at"] == before[r["run_hash"]] for r in rows if r["run_hash"] in before)
    assert not list(base.glob("bench-ray-*"))
    left = [pid for pid, started in family.items() if started is not None and _start_time(pid) == started]
    assert not left, [cmdline(pid) for pid in left]
    assert {p.name for p in base.iterdir()} <= {"torchinductor_root"}  # torch's own compile cache, nothing of Ray
    shutil.rmtree(base)

