"""Bad input: one line on stderr, exit code 2, no traceback, nothing started."""
from __future__ import annotations

import json
import os
from pathlib import Path
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
        (["run", "--methods", ""], "--methods is empty"),  # never the whole default grid
        (["run", "--methods", "random", "--storage", "s3://bucket/bench"], "mount the bucket (s3fs, gcsfuse)"),
        (["run", "--methods", "random", "--storage", "/tmp/a", "--cache", "/tmp/b"], "give --cache or --storage"),
        (["run", "--datasets", " , "], "--datasets is empty"),
        (["run", "--ipc", ""], "--ipc is empty"),
        (["run", "--archs", ""], "--archs is empty"),
        (["plan", "--methods", ""], "--methods is empty"),
        (["run", "--seeds", ""], "--seeds must be"),
        (["list", "metods"], "invalid choice"),
        # what the third reliability round found (F-4, F-7, F-8)
        (["run", "--ipc", "\u00b2"], "--ipc must be positive integers"),  # '²'.isdigit() is True
        (["run", "--seeds", "\u00b2"], "--seeds must be"),
        (["run", "--seeds", "99999999999999999999"], "--seeds N runs seeds 0..N-1 and needs 1 <= N <= 1000"),
        (["run", "--seeds", "99999999999999999999,1"], "a seed of --seeds must be an integer from 0 to"),
        (["run", "--ipc", "99999999999999999999"], "at most 1,000,000"),
        (["export", "--method", "random", "--dataset", "digits", "--ipc", "1", "--seed", "99999999999999999999"],
         "--seed must be an integer from 0 to"),
        (["export", "--method", "random", "--dataset", "digits", "--ipc", "1", "--seed", "-1"], "--seed must be"),
        (["plan", "--cpus-per-trial", "nan"], "--cpus-per-trial must be a number from 0.1 to 1024"),
        (["plan", "--cpus-per-trial", "0.001"], "--cpus-per-trial must be a number from 0.1"),
        (["run", "--methods", "random", "--cpus-per-trial", "inf"], "--cpus-per-trial must be"),
        (["run", "--methods", "random", "--gpus-per-trial", "nan"], "--gpus-per-trial must be"),
        (["tune", "--methods", "d4m", "--ipc", "1", "--trials", "2", "--seed", "-3"], "--seed must be"),
        (["run", "--methods", "herding[teacher_steps=99999999999999999999999999]", "--datasets", "digits"],
         "option 'teacher_steps' of method 'herding' must be at most 1,000,000"),
        (["run", "--datasets", "imagewoof[root=/nonexistent,size=100000]"], "size=100000 is out of range"),
        (["run", "--protocol", ""], "--protocol is empty"),
        (["run", "--budget", " "], "--budget is empty"),
        (["tune", "--methods", "d4m", "--ipc", "1", "--trials", "2", "--datasets", ""], "--datasets is empty"),
        (["run", "--methods", "d4m[strength=0.5,strength=0.6]"], "option 'strength' is given twice"),
        (["run", "--methods", "random", "--address", "127.0.0.1:99999"], "--address must be host:port"),
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


def test_ray_address_in_the_environment_is_the_cluster_to_join(bench_env, monkeypatch, capsys):
    """Ray's own RAY_ADDRESS names the cluster to join (it used to crash `bench run`)."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert main(["run", "--methods", "random", "--datasets", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Ray cluster at 127.0.0.1:1 (RAY_ADDRESS)" in err and "unset RAY_ADDRESS" in err
    assert "\n" not in err


def test_a_trial_no_node_can_hold_is_refused_before_anything_waits(bench_env, capsys):
    from benchmark.grid.runner import check_fits

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    check_fits(nodes, 2, 0)
    with pytest.raises(Exception, match="the largest has 2 CPUs and 0 GPUs"):
        check_fits(nodes, 4, 0)  # a dead node does not count
    # through the CLI, on the embedded cluster of this machine (no GPU): one line, no wait
    assert main(["run", "--methods", "random", "--datasets", "digits", "--ipc", "1", "--archs", "convnet3",
                 "--budget", "smoke", "--seeds", "1", "--no-references", "--gpus-per-trial", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no node of the Ray cluster can hold a trial of 1 CPUs and 5 GPUs" in err and "\n" not in err


@pytest.mark.parametrize(("spec", "expected"), [
    ("herding[teacher_steps=1_000]", "herding[teacher_steps=1000]"),
    ("herding[teacher_steps=01000]", "herding[teacher_steps=1000]"),
    ("d4m[strength=0.50,guidance=4.0]", "d4m[guidance=4,strength=0.5]"),
    ("d4m[guidance=4]", "d4m[guidance=4]"),
    ("d4m+evlf[mask_padding=1]", "d4m+evlf[mask_padding=true]"),
])
def test_one_request_one_name_and_one_hash(spec, expected):
    from methods import resolve_method

    assert resolve_method(spec).label == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("d4m[strength=nan]", "option 'strength' of method 'd4m' must be a finite number, got 'nan'"),
    ("d4m[guidance=inf]", "must be a finite number, got 'inf'"),
    ("herding[teacher_steps=-5]", "option 'teacher_steps' of method 'herding' must not be negative, got -5"),
    ("d4m+evlf[lambda1=-0.1]", "option 'lambda1' of plug-in 'evlf' must not be negative"),
])
def test_non_finite_and_negative_option_values_are_refused(spec, expected, bench_env, capsys):
    assert main(["run", "--methods", spec, "--datasets", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err


def test_data_set_specs_are_normalised_and_their_paths_made_absolute(tmp_path, monkeypatch):
    """A trial runs in another working directory: relative paths are resolved by the command."""
    from core.datasets import canonical_dataset

    monkeypatch.chdir(tmp_path)
    assert canonical_dataset("imagefolder:trees/a[size=032]") == f"imagefolder:{tmp_path / 'trees' / 'a'}[size=32]"
    assert canonical_dataset("imagewoof[size=0256,root=woof]") == f"imagewoof[root={tmp_path / 'woof'},size=256]"
    assert canonical_dataset("fashion-mnist") == "fashion-mnist"


def test_relative_directory_settings_are_made_absolute(tmp_path, monkeypatch):
    from benchmark.cli import absolute_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sd15").mkdir()
    monkeypatch.setenv("BENCH_CACHE", "cache")
    monkeypatch.setenv("BENCH_SD15", "sd15")
    monkeypatch.setenv("BENCH_DIT_XL_2_256", "facebook/DiT-XL-2-256")  # a hub id, not a path here
    absolute_settings()
    assert os.environ["BENCH_CACHE"] == str(tmp_path / "cache") and os.environ["BENCH_SD15"] == str(tmp_path / "sd15")
    assert os.environ["BENCH_DIT_XL_2_256"] == "facebook/DiT-XL-2-256"


def _external_files(root):
    import torch
    from PIL import Image

    torch.save({"images": torch.rand(20, 1, 8, 8), "labels": torch.arange(10).repeat(3)}, root / "mismatch.pt")
    (root / "zero.pt").write_bytes(b"")
    for c in "01":
        (root / "pngs" / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(root / "pngs" / c / "a.png")
    (root / "pngs" / "1" / "b.png").write_bytes(b"\x89PNG garbage")


@pytest.mark.parametrize(("name", "expected"), [
    ("mismatch.pt", "mismatch.pt: 20 images but 30 labels; give one label per image"),
    ("zero.pt", "zero.pt: not a readable tensor file (EOFError"),
    ("pngs", "b.png: cannot read the image"),
])
def test_a_bad_external_set_is_one_line(name, expected, bench_env, tmp_path, capsys):
    _external_files(tmp_path)
    assert main(["eval", "--data", str(tmp_path / name), "--dataset", "digits", "--budget", "smoke",
                 "--trust-pickle"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


def test_a_store_damaged_in_the_middle_is_one_line(bench_env, capsys):
    from benchmark.grid.plan import GridRequest, plan_runs
    from benchmark.store.results import ResultStore
    from core.rows import ResultRow

    store_dir, _ = bench_env
    runs = plan_runs(GridRequest(methods=("random",), datasets=("digits",), ipcs=(1, 2, 3), archs=("convnet3",),
                                 budget="smoke", seeds=tuple(range(40)), references=False)).runs
    with ResultStore(store_dir) as store:
        for run in runs:
            store.put(ResultRow.ok(run, 50.0, {"padding": "x" * 500}).stamped("abc", {}, 1.0))
    path = store_dir / "bench.sqlite3"
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096  # many pages: the damage is neither in the header nor the schema
    middle = len(data) // 2
    data[middle:middle + 3000] = b"Z" * 3000
    path.write_bytes(bytes(data))
    assert main(["results", "--store", str(store_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is corrupt" in err and "move it aside" in err and "\n" not in err


def test_a_pickle_is_read_only_when_trusted_and_then_never_runs_code(bench_env, tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"images": torch.rand(20, 1, 8, 8), "labels": torch.arange(20) % 10, "x": Payload()}, tmp_path / "evil.pt")
    base = ["eval", "--data", str(tmp_path / "evil.pt"), "--dataset", "digits", "--budget", "smoke"]
    assert main(base) == 2
    assert "is a pickle file, which can run code when read" in capsys.readouterr().err
    assert main([*base, "--trust-pickle"]) == 2  # PyTorch's restricted loader refuses the payload
    err = capsys.readouterr().err.strip()
    assert "not a readable tensor file" in err and "\n" not in err and not marker.exists()
