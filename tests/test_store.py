"""Tests for the SQLite result store."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.store.results import ResultStore, default_store_root
from core.errors import BenchError
from core.rows import ResultRow


def make_row(run_hash: str = "h1", status: str = "ok", **kw) -> ResultRow:
    base = dict(
        run_hash=run_hash, status=status, method="random", dataset="fashion_mnist", ipc=10,
        arch="convnet3", protocol="dc", budget="quick", seed=0,
        test_acc=71.25 if status == "ok" else None,
        config={"method": "random", "ipc": 10, "nested": {"b": [1, 2], "a": None}},
        metrics={"distill_s": 1.5, "eval_s": 12.0, "bytes": 7840, "steps": 300},
        error=None if status == "ok" else "RuntimeError: boom\nTraceback ...",
        git_commit="abc123", versions={"torch": "2.14.1"}, created_at=1700000000.5,
    )
    base.update(kw)
    return ResultRow(**base)


def test_roundtrip_preserves_every_field(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "res")
    row = make_row()
    store.put(row)
    assert store.path == tmp_path / "res" / "bench.sqlite3"
    assert store.rows() == [row]
    assert store.get("h1") == row
    assert store.get("nope") is None
    store.close()


def test_full_row_keeps_ipc_none(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put(make_row("f", method="full", ipc=None))
        (got,) = store.rows(method="full")
        assert got.ipc is None


def test_wal_mode_is_on(tmp_path: Path) -> None:
    ResultStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "bench.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    indexed = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"results_status", "results_dataset", "results_method"} <= indexed
    conn.close()


def test_put_replaces_by_run_hash(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put(make_row("h", status="error"))
        store.put(make_row("h", status="ok", test_acc=80.0))
        all_rows = store.rows(status=None)
        assert len(all_rows) == 1
        assert all_rows[0].status == "ok" and all_rows[0].test_acc == 80.0
        assert store.errors() == []


def test_done_hashes_only_ok_and_filters(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put(make_row("a"))
        store.put(make_row("b", status="error"))
        store.put(make_row("c", method="d4m[strength=0.5]", dataset="cifar10"))
        assert store.done_hashes() == {"a", "c"}
        assert [r.run_hash for r in store.errors()] == ["b"]
        assert "Traceback" in store.errors()[0].error
        assert {r.run_hash for r in store.rows()} == {"a", "c"}
        assert {r.run_hash for r in store.rows(status=None)} == {"a", "b", "c"}
        assert [r.run_hash for r in store.rows(dataset="cifar10")] == ["c"]
        assert [r.run_hash for r in store.rows(method="random")] == ["a"]
        assert [r.run_hash for r in store.rows(status="error", method="random")] == ["b"]


def test_survives_reopening(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.put(make_row("a"))
    store.close()
    with ResultStore(tmp_path) as again:
        assert again.done_hashes() == {"a"}
        assert again.rows()[0] == make_row("a")


def test_rows_visible_to_another_process_while_open(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.put(make_row("a"))
    code = (
        "import sys; from benchmark.store.results import ResultStore;"
        "s = ResultStore(sys.argv[1]); print(sorted(s.done_hashes())); s.close()"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "['a']"
    store.close()


def test_created_at_filled_when_zero(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.put(make_row("a", created_at=0.0))
        assert store.rows()[0].created_at > 1.6e9


def test_to_json_is_flat_and_complete() -> None:
    data = make_row().to_json()
    for key in ("method", "dataset", "ipc", "arch", "protocol", "budget", "seed", "test_acc", "status",
                "run_hash", "config", "metrics", "error", "git_commit", "versions", "created_at"):
        assert key in data
    assert ResultRow.from_json(data) == make_row()


def test_unwritable_path_is_one_line_bench_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(BenchError) as info:
        ResultStore(blocker / "store")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(blocker / "store") in msg and "BENCH_STORE" in msg and "--store" in msg


def test_non_database_file_is_bench_error(tmp_path: Path) -> None:
    (tmp_path / "bench.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BenchError):
        ResultStore(tmp_path)


def test_default_store_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_STORE", str(tmp_path / "x"))
    assert default_store_root() == tmp_path / "x"
    monkeypatch.delenv("BENCH_STORE")
    monkeypatch.chdir(tmp_path)
    assert default_store_root() == tmp_path / "bench-results"
