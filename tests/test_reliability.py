"""The third reliability round: each finding's reproduction, which failed before its fix."""
from __future__ import annotations

import http.server
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark.cli import main


def _build_once(root: str, log: str) -> None:
    from core.artifacts import ArtifactCache

    def build() -> dict:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(1.0)  # long enough for the other process to ask meanwhile
        return {"value": 1}

    ArtifactCache(root).get_or_build("teacher", "same-key", build)


def test_two_processes_that_want_the_same_artifact_build_it_once(tmp_path):
    """F-6: two drivers started together on an empty cache trained the same teacher twice."""
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_build_once, args=(str(tmp_path / "cache"), str(log))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert log.read_text().splitlines() == ["built"]


def test_an_address_that_is_not_ray_is_refused_in_seconds(bench_env, capsys):
    """F-3: a reachable port that is not Ray (an HTTP server) hung `bench run` for minutes."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        code = main(["run", "--methods", "random", "--datasets", "digits", "--ipc", "1", "--address",
                     f"127.0.0.1:{server.server_address[1]}"])
        took = time.monotonic() - start
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "is not a Ray cluster" in err, err
    assert took < 30


def test_a_fifo_is_refused_not_read_forever(bench_env, tmp_path, capsys):
    """F-9: `bench eval` on a named pipe blocked forever."""
    fifo = tmp_path / "x.safetensors"
    os.mkfifo(fifo)
    assert main(["eval", "--dataset", "digits", "--data", str(fifo)]) == 2
    assert "is neither a regular file nor a folder" in capsys.readouterr().err


def test_a_plot_that_cannot_be_made_is_an_error(bench_env, tmp_path, capsys):
    """F-8: `bench show random --plot FILE` exited 0 and wrote nothing."""
    assert main(["show", "random", "--dataset", "digits", "--plot", str(tmp_path / "curves.png")]) == 2
    assert "has no trained plug-in with loss curves" in capsys.readouterr().err
    assert not (tmp_path / "curves.png").exists()


def test_a_local_ray_start_that_times_out_is_retried_then_one_line(monkeypatch):
    """Item 1: Ray's local node timing out (a loaded machine) ended in a traceback. Ray's own
    start-up timeout is injected; the harness retries it until BENCH_RAY_START_S, then says what to do."""
    import ray

    from benchmark.cluster.ray_session import ray_session
    from core.errors import BenchError

    tries = []

    def timing_out(*args, **kwargs):
        tries.append(kwargs.get("_temp_dir"))
        time.sleep(0.2)
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", timing_out)
    monkeypatch.setenv("BENCH_RAY_START_S", "0.5")
    with pytest.raises(BenchError) as err:
        with ray_session(None):
            pass
    assert len(tries) >= 2  # tried again while time was left
    assert "did not start within 0.5 s" in str(err.value) and "BENCH_RAY_START_S" in str(err.value)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("BENCH_RAY_START_S", "soon")
    with pytest.raises(BenchError, match="BENCH_RAY_START_S must be a number of seconds"):
        with ray_session(None):
            pass


def _rows(store: Path) -> int:
    db = store / "bench.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize(("stop", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")], ids=["ctrl-c", "sigterm"])
def test_without_a_terminal_progress_is_lines_and_a_stop_says_what_was_not_done(bench_env, stop, code, said):
    """Item 3, F-2 and F-10: with standard error a pipe, `bench run` printed one line and nothing
    for minutes; Ctrl-C mid-grid exited 0 saying "4 runs done, 0 failed"; SIGTERM ended in Ray's C
    stack dump, exit 134. Now each finished run is a line (done / total, elapsed, remaining), and
    either signal ends in "N runs not done" with the shell's code for it (130, 143) and the
    finished rows in the store."""
    store, _ = bench_env
    grid = [sys.executable, "-m", "benchmark.cli", "run", "--methods", "random", "--datasets", "digits", "--ipc",
            "1,2,3,4,5,6", "--archs", "convnet3", "--seeds", "2", "--budget", "smoke", "--no-references",
            "--no-leaderboard"]
    run = subprocess.Popen(grid, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _rows(store) < 2 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert run.poll() is None, "the grid ended before it could be interrupted"
    run.send_signal(stop)
    out, err = run.communicate(timeout=180)
    done = _rows(store)
    assert run.returncode == code, (out, err[-3000:])
    assert "bench: 12 runs to do" in err
    assert "runs 1/12 done" in err and "elapsed" in err and " left" in err
    assert f"{said}: {12 - done} runs not done" in err, err[-2000:]
    assert 2 <= done < 12
    assert "Traceback" not in err and "received at time" not in err


def _contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by relative name, with its hash: what a command may not change."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


_REPORTING = (["plan", "--datasets", "fashion-mnist", "--json"], ["results"], ["results", "--json"],
              ["results", "--errors"], ["leaderboard", "--no-samples"], ["leaderboard"],
              ["list", "methods"], ["show", "random", "--dataset", "fashion-mnist", "--json"])


@pytest.mark.parametrize("writer_open", [False, True], ids=["alone", "beside-a-writer"])
def test_commands_that_only_report_leave_the_store_and_the_cache_as_they_were(tmp_path, capsys, writer_open):
    """Item 2: a `bench plan` on the committed store, run while another process had it open, left
    `-wal` and `-shm` files in the repository. Each reporting command now opens the store (and the
    cache) read-only: the store's folder keeps exactly its files, byte for byte, and a cache folder
    that does not exist is not created."""
    store = tmp_path / "store"
    shutil.copytree(Path(__file__).parent.parent / "leaderboards" / "store", store)
    cache = tmp_path / "cache"
    writer = None
    if writer_open:  # the situation of the report: a driver (here, a plain WAL writer) holds the file
        writer = sqlite3.connect(store / "bench.sqlite3")
        writer.execute("PRAGMA journal_mode = WAL").fetchone()
        writer.execute("SELECT COUNT(*) FROM results").fetchone()
    before = _contents(store)
    try:
        for command in _REPORTING:
            flags = ["--store", str(store)] if command[0] in ("plan", "results", "leaderboard") else []
            flags += ["--cache", str(cache)] if command[0] in ("plan", "leaderboard", "show") else []
            flags += ["--out", str(tmp_path / "boards")] if command[0] == "leaderboard" else []
            assert main([*command, *flags]) == 0, command
            assert _contents(store) == before, command
            assert not cache.exists(), command
    finally:
        if writer is not None:
            writer.close()
    out = capsys.readouterr().out
    assert "dc/quick" in out or "quick" in out  # the reports did read the copied rows
    assert (tmp_path / "boards" / "index.md").is_file()


def test_a_store_on_a_read_only_file_system_is_still_read(tmp_path):
    """F-10: a store that cannot be written (read-only media, another user's folder) refused even
    `bench results`, since opening it asked for WAL mode. The copy is bind-mounted read-only onto
    itself in a private mount namespace (``unshare``), so the refusal comes from the kernel, for
    root as for anyone."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare and user namespaces for a read-only mount")
    store = tmp_path / "store"
    shutil.copytree(Path(__file__).parent.parent / "leaderboards" / "store", store)
    mount_ro = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    done = subprocess.run(["unshare", "-rm", "sh", "-c", mount_ro, str(store), sys.executable, "-m", "benchmark.cli",
                           "results", "--json", "--store", str(store)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) > 50 and "ok" in {r["status"] for r in rows}
    assert sorted(p.name for p in store.iterdir()) == ["bench.sqlite3"]


def test_a_failed_trial_is_one_line_not_rays_traceback(capsys):
    """F-10: a worker killed mid-trial printed Tune's 46-line traceback of Ray internals. The
    harness's filter on Tune's controller log keeps the message and the error's first line."""
    import logging

    from benchmark.cluster.ray_session import TUNE_CONTROLLER_LOG, quiet_tune

    quiet_tune()
    log = logging.getLogger(TUNE_CONTROLLER_LOG)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.extend(logging.Formatter().format(record).splitlines())
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError("The actor died unexpectedly before finishing this task.\n\tclass_name: ImplicitFunc")
        except RuntimeError:
            log.error("Trial task failed for trial %s", "t_00001", exc_info=True)
    finally:
        log.removeHandler(handler)
    assert lines == ["Trial task failed for trial t_00001: RuntimeError: The actor died unexpectedly before "
                     "finishing this task."]
