"""Bad input: one line on stderr, exit code 2, no traceback, nothing started."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--methods", "radnom"], "unknown method 'radnom'; did you mean 'random'?"),
        (["run", "--datasets", "fashion-mnits"], "unknown dataset 'fashion-mnits'; did you mean 'fashion-mnist'?"),
        (["run", "--archs", "convnet"], "unknown arch 'convnet'"),
        (["run", "--protocol", "dcc"], "unknown protocol 'dcc'"),
        (["run", "--budget", "fast"], "unknown budget of protocol 'dc' 'fast'"),
        (["run", "--ipc", "0"], "--ipc must be positive integers"),
        (["run", "--ipc", "ten"], "--ipc must be positive integers"),
        (["run", "--seeds", "-1"], "--seeds must be"),
        (["run", "--seeds", "0"], "--seeds N runs seeds 0..N-1"),
        (["run", "--methods", "random", "--datasets", "digits", "--ipc", "500"], "IPC 500 is larger than the smallest class"),
        (["run", "--methods", "herding[steps=3]", "--datasets", "digits"], "has no option 'steps'"),
        (["run", "--datasets", "fashion-mnist[root=/nonexistent/fm]"], "/nonexistent/fm"),
        (["run", "--methods", "random", "--datasets", "digits", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["list", "metods"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, bench_env, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and "\n" not in err
    assert expected in err
    assert "Traceback" not in err


def test_unwritable_store_and_cache(bench_env, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main(["run", "--datasets", "digits", "--store", str(blocker / "store")]) == 2
    assert "cannot write the result store" in capsys.readouterr().err
    assert main(["run", "--datasets", "digits", "--cache", str(blocker / "cache")]) == 2
    assert "BENCH_CACHE" in capsys.readouterr().err


def test_console_entry_point_exit_code(bench_env):
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--methods", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown method 'nope'" in out.stderr


def test_list_json(capsys):
    import json

    assert main(["list", "methods", "--json"]) == 0
    assert {"random", "herding", "full"} <= set(json.loads(capsys.readouterr().out))
    assert main(["list", "budgets", "--json"]) == 0
    budgets = json.loads(capsys.readouterr().out)
    assert {(b["protocol"], b["budget"]) for b in budgets} == {
        (p, b) for p in ("dc", "dsa", "idc", "softlabel") for b in ("paper", "quick", "smoke")}
    assert main(["list", "protocols"]) == 0
    assert capsys.readouterr().out.split() == ["dc", "dsa", "idc", "softlabel"]


def test_list_plugins_and_variants(capsys):
    assert main(["list", "plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["evlf"]
    assert main(["list", "variants", "--json"]) == 0
    variants = json.loads(capsys.readouterr().out)
    assert {"d4m+evlf", "dit+evlf", "minimax+evlf", "mgd3+evlf"} <= set(variants) and "random+evlf" not in variants
