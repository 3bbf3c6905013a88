"""Soak test of the runner under faults: a real `bench run` of N runs while trial workers are
killed at random (and, with --kill-driver, the driver once, then the grid run again), and a count
of what came out.

    python benchmarks/soak.py --runs 40 --kill-every 3 --seed 0

Prints runs planned, kills made, trials retried, runs failed after the retries (their trial was
killed three times: recorded as failed, and a plain rerun, which the soak then makes, does
them), runs completed, lost (planned, not completed) and duplicated (runs reported done more
often than there are distinct rows). Target: 0 lost, 0 duplicated. Uses its own temporary
store and cache.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from procs import cmdline, descendants  # noqa: E402

TRIAL = "ray::ImplicitFunc"  # the process title of a Tune function trial's worker


def _grid(runs: int) -> list[str]:
    seeds = 2
    ipcs = ",".join(str(i) for i in range(1, runs // seeds + 1))
    return ["run", "--methods", "random", "--datasets", "digits", "--ipc", ipcs, "--archs", "convnet3",
            "--seeds", str(seeds), "--budget", "smoke", "--no-references", "--no-leaderboard"]


def _bench(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`bench` with its output in a file: a pipe nobody reads while it runs would fill and stop it."""
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], env=env, text=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _soak(driver: subprocess.Popen, rng: random.Random, every: float, kill_driver_after: float | None) -> tuple[int, bool]:
    """Kill a random trial worker every ``every`` seconds on average; returns (kills, driver killed)."""
    kills, started = 0, time.monotonic()
    while driver.poll() is None:
        time.sleep(rng.expovariate(1 / every))
        if kill_driver_after is not None and time.monotonic() - started > kill_driver_after:
            driver.kill()
            return kills, True
        workers = [p for p in descendants(driver.pid) if cmdline(p).startswith(TRIAL)]
        if workers:
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    return kills, False


def _done(out: str) -> tuple[int, int]:
    """(runs done, trials retried) from a `bench run` summary line."""
    done = re.search(r"(\d+) runs done", out)
    retried = re.search(r"(\d+) trials retried", out)
    return int(done.group(1)) if done else 0, int(retried.group(1)) if retried else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="runs in the grid (even)")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between worker kills")
    parser.add_argument("--kill-driver", type=float, default=None, metavar="S",
                        help="also kill the driver S seconds in, then run the grid again")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as work:
        env = dict(os.environ, BENCH_STORE=f"{work}/store", BENCH_CACHE=f"{work}/cache")
        grid = _grid(args.runs)
        start = time.perf_counter()
        driver = _bench(grid, env, Path(work) / "first.log")
        kills, driver_killed = _soak(driver, rng, args.kill_every, args.kill_driver)
        driver.wait()
        done, retried = _done((Path(work) / "first.log").read_text())
        if driver_killed:  # its finished runs are in the store (it printed no summary); the rerun does the rest
            done = list(_statuses(work).values()).count("ok")
            _bench(grid, env, Path(work) / "again.log").wait()
            more, more_retried = _done((Path(work) / "again.log").read_text())
            done, retried = done + more, retried + more_retried
        failed = list(_statuses(work).values()).count("error")  # trials that died more often than retried
        if failed:  # recorded as failed, not lost: a plain rerun does them
            _bench(grid, env, Path(work) / "resume.log").wait()
            done += _done((Path(work) / "resume.log").read_text())[0]
        statuses = _statuses(work)
        completed = list(statuses.values()).count("ok")
        planned = (args.runs // 2) * 2
        print(json.dumps({"runs": planned, "worker_kills": kills, "driver_killed": driver_killed,
                          "retried": retried, "failed_after_retries": failed, "completed": completed,
                          "lost": planned - completed, "duplicated": done - completed,
                          "seconds": round(time.perf_counter() - start, 1)}, indent=1))


def _statuses(work: str) -> dict[str, str]:
    """run hash -> status of every row of the soak's store."""
    with sqlite3.connect(f"{work}/store/bench.sqlite3") as conn:
        return dict(conn.execute("SELECT run_hash, status FROM results").fetchall())


if __name__ == "__main__":
    main()
