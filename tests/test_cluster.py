"""A real two-node Ray cluster on loopback, started with Ray's own `ray start` as a user would: the
head holds no CPU (so every trial runs on the second node), the second node has a cache of its
own and no data directory. `bench run --address` runs a grid with a teacher, a diffusion method
and an image folder there; rows, sample grids and a later `bench eval` all work from the driver."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procs import cmdline, descendants, parents
from test_cli_e2e import bench
from test_datasets import _write_tree

RAY = str(Path(sys.executable).with_name("ray"))
NODE_VARS = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "BENCH_CACHE", "BENCH_STORE", "BENCH_FASHION_MNIST_DIR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([RAY, "start", *args, "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.3)
    return proc


def _stop(procs: list[subprocess.Popen]) -> None:
    family = set().union(*(descendants(p.pid) for p in procs))
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    deadline = time.monotonic() + 20
    while (alive := family & parents().keys()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in alive:  # whatever ignored the polite request
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """(address, environment for the driver, the second node's cache)."""
    work = tmp_path_factory.mktemp("cluster")
    # Ray's token authentication, as `ray start --head` enables it; the token reaches every process
    base = {k: v for k, v in os.environ.items() if k not in NODE_VARS}
    base |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port = _free_port()
    head = _start(["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false"], base,
                  work / "head.log")
    node_cache = work / "node-cache"
    try:
        node = _start(["--address", f"127.0.0.1:{port}", "--num-cpus", "2"], base | {"BENCH_CACHE": str(node_cache)},
                      work / "node.log")
    except BaseException:
        _stop([head])
        raise
    yield f"127.0.0.1:{port}", {k: base[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}, node_cache
    _stop([head, node])
    assert not any("ray" in cmdline(pid) for pid in descendants(head.pid) | descendants(node.pid) - {head.pid, node.pid})


def test_a_grid_runs_on_a_node_without_the_data_or_the_drivers_cache(two_nodes, bench_env, tmp_path):
    address, auth, node_cache = two_nodes
    store, cache = bench_env
    tree = tmp_path / "tree"
    _write_tree(tree, ["zebra", "apple", "mango_tree"], {"train": 12, "val": 4})
    data = f"imagefolder:{tree}[size=8]"
    grid = ["--datasets", data, "--ipc", "1", "--archs", "convnet3", "--seeds", "1", "--budget", "smoke"]
    run = bench("run", "--address", address, "--methods", "herding,dit[recipe=smoke]", *grid, "--no-leaderboard",
                extra_env=auth, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(bench("results", "--json").stdout)
    assert sorted(r["method"] for r in rows) == ["dit[recipe=smoke]", "full", "herding", "random", "recon[recipe=smoke]"]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    nodes = {r["metrics"]["node"] for r in rows}
    assert len(nodes) == 1 and "Ray node" in nodes.pop()  # every row says where it ran

    # The second node received the data set as the driver loaded it (it decoded no image folder),
    # fetched the teachers and the backbone the driver prepared, and sent its distilled sets back.
    fingerprint = rows[0]["config"]["data_fingerprint"]
    assert (node_cache / "datasets" / f"{fingerprint}.safetensors").exists()
    assert not (node_cache / "decoded-images").exists()
    for kind in ("teacher", "backbone"):
        made = {p.name: p.read_bytes() for p in (cache / kind).glob("*.safetensors")}
        assert made and {p.name: p.read_bytes() for p in (node_cache / kind).glob("*.safetensors")} == made
    sent = {p.name for p in (node_cache / "distilled").glob("*.safetensors")}
    assert sent and sent <= {p.name for p in (cache / "distilled").glob("*.safetensors")}

    boards = tmp_path / "boards"
    assert bench("leaderboard", "--out", str(boards)).returncode == 0
    grids = {p.name.rsplit("__", 1)[1] for p in (boards / "samples").glob("*.png")}
    # from the sets the node sent back
    assert grids == {"random.png", "herding.png", "dit_recipe=smoke.png", "recon_recipe=smoke.png"}

    out = tmp_path / "export"
    exported = bench("export", "--method", "dit[recipe=smoke]", "--dataset", data, "--ipc", "1", "--seed", "0",
                     "--out", str(out))
    assert exported.returncode == 0, exported.stderr[-2000:]
    scored = bench("eval", "--address", address, "--data", str(next(out.glob("*.safetensors"))), "--dataset", data,
                   "--budget", "smoke", "--seeds", "1", "--name", "sent", "--no-references", extra_env=auth, timeout=300)
    assert scored.returncode == 0, scored.stderr[-3000:]
    again = {r["method"]: r for r in json.loads(bench("results", "--json").stdout)}
    assert again["external:sent"]["test_acc"] == again["dit[recipe=smoke]"]["test_acc"]

    # bench tune on the cluster: the candidates run on the node (the head has no CPU), which gets
    # the data and the backbone from the driver and seals the test split there as well
    from benchmark.store.studies import COMPLETE, StudyStore

    tuned = bench("tune", "--address", address, "--methods", "dit[recipe=smoke]", "--datasets", data, "--ipc", "1",
                  "--trials", "2", "--budget", "smoke", "--scorings", "1", extra_env=auth, timeout=600)
    assert tuned.returncode == 0, tuned.stderr[-3000:] + tuned.stdout[-2000:]
    (study,) = StudyStore(str(store)).all()
    assert study.method == "dit[recipe=smoke]" and [t.status for t in study.trials] == [COMPLETE, COMPLETE]
    assert not (node_cache / "decoded-images").exists()


def test_with_shared_storage_every_node_uses_it_and_nothing_is_transferred(two_nodes, bench_env, tmp_path):
    address, auth, node_cache = two_nodes
    node_files = sorted(node_cache.rglob("*"))
    shared = tmp_path / "shared"
    run = bench("run", "--address", address, "--storage", str(shared), "--methods", "herding", "--datasets", "digits",
                "--ipc", "1", "--archs", "convnet3", "--seeds", "1", "--budget", "smoke", "--no-references",
                "--no-leaderboard", extra_env=auth, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (row,) = json.loads(bench("results", "--json").stdout)
    assert row["status"] == "ok" and "Ray node" in row["metrics"]["node"]
    assert sorted(node_cache.rglob("*")) == node_files  # the node's own cache was not touched
    assert list((shared / "distilled").glob("*.safetensors")) and list((shared / "teacher").glob("*.safetensors"))
    assert not list(shared.glob("*.probe"))
