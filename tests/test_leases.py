"""Run leases: two drivers on one store split the runs; a claim lives while its owner beats."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

from benchmark.store.leases import RunLeases
from benchmark.store.results import ResultStore


def _store(tmp_path):
    ResultStore(tmp_path).close()
    return tmp_path / "bench.sqlite3"


def test_a_run_claimed_by_a_live_driver_is_left_to_it_until_released(tmp_path):
    db = _store(tmp_path)
    with RunLeases(db) as first, RunLeases(db) as second:
        assert first.claim(["a", "b"]).ours == ["a", "b"]
        claim = second.claim(["b", "c"])
        assert claim.ours == ["c"] and claim.held == {"b": f"{first.host}:{os.getpid()}"}
        first.release(["b"])
        assert second.claim(["b"]).ours == ["b"]
    with sqlite3.connect(db) as conn:  # leaving releases every claim
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def test_claims_of_a_silent_or_dead_driver_go_stale(tmp_path):
    db = _store(tmp_path)
    with RunLeases(db, heartbeat_s=3600) as silent:
        silent.claim(["a"])
        time.sleep(0.05)
        with RunLeases(db, ttl_s=0.01) as strict:
            assert strict.claim(["a"]).ours == ["a"]  # no heartbeat within its TTL: stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(db) as conn:  # a driver of this machine killed before it could release
        conn.execute("INSERT INTO leases VALUES ('b', 'gone', ?, ?, ?)", (silent.host, dead.pid, time.time()))
    with RunLeases(db) as next_run:
        assert next_run.claim(["b"]).ours == ["b"]


def test_the_heartbeat_keeps_a_claim_fresh(tmp_path):
    db = _store(tmp_path)
    with RunLeases(db, heartbeat_s=0.05) as beating:
        beating.claim(["a"])
        with sqlite3.connect(db) as conn:
            first = conn.execute("SELECT heartbeat FROM leases").fetchone()[0]
            time.sleep(0.3)
            assert conn.execute("SELECT heartbeat FROM leases").fetchone()[0] > first


def test_two_bench_runs_on_one_store_never_do_a_run_twice(bench_env):
    """The second `bench run` starts while the first holds its runs; their grids overlap."""
    store, _ = bench_env
    common = ["--methods", "random", "--datasets", "digits", "--archs", "convnet3", "--seeds", "2", "--budget",
              "smoke", "--no-references", "--no-leaderboard"]
    cli = [sys.executable, "-m", "benchmark.cli", "run", *common]
    first = subprocess.Popen([*cli, "--ipc", "1,2,3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = store / "bench.sqlite3"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    second = subprocess.run([*cli, "--ipc", "2,3,4"], capture_output=True, text=True, timeout=300)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (err[-2000:], second.stderr[-2000:])
    done = [int(text.split(" runs done")[0].split()[-1]) for text in (out, second.stdout)]
    assert sum(done) == 8  # 4 IPCs x 2 seeds, each done by exactly one of them
    assert done[0] == 6 and "runs left to another bench run on this store" in second.stdout
    listed = subprocess.run([sys.executable, "-m", "benchmark.cli", "results", "--json"], capture_output=True,
                            text=True, timeout=120)
    assert len(json.loads(listed.stdout)) == 8
