"""End to end: the real `bench` CLI, real Ray, a real SQLite store, on `digits` with `smoke`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from golden import check_golden

PLUGINS = Path(__file__).parent / "plugins"
GRID = ["--datasets", "digits", "--ipc", "1,5", "--archs", "convnet3", "--seeds", "2", "--budget", "smoke"]


def bench(*args: str, extra_env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def results(store: Path) -> list[dict]:
    out = bench("results", "--json", "--store", str(store))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_grid_runs_then_resumes_without_recomputing(bench_env, tmp_path):
    store, _ = bench_env
    first = bench("run", "--methods", "random,herding[teacher_steps=100]", *GRID)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "herding[teacher_steps=100]" in first.stdout  # a spec is echoed as typed, not read as markup
    rows = results(store)
    assert len(rows) == 10  # the full reference is added automatically, once per seed
    assert {(r["method"], r["ipc"], r["seed"]) for r in rows} == {
        (m, i, s) for m in ("random", "herding[teacher_steps=100]") for i in (1, 5) for s in (0, 1)} | {
        ("full", None, 0), ("full", None, 1)}
    by_cell = {}
    for r in rows:
        by_cell.setdefault((r["method"], r["ipc"]), []).append(r["test_acc"])
    mean = {k: sum(v) / len(v) for k, v in by_cell.items()}
    herding = next(r for r in rows if r["method"].startswith("herding") and r["ipc"] == 5)
    assert herding["gain_over_random"] == pytest.approx(mean[(herding["method"], 5)] - mean[("random", 5)], abs=1e-3)
    assert herding["gap_to_full"] == pytest.approx(mean[("full", None)] - mean[(herding["method"], 5)], abs=1e-3)
    assert all(r[k] is not None for r in rows if r["method"] != "full"
               for k in ("recognizability", "fd_teacher", "coverage"))
    assert all((r["diversity"] is None) == (r["ipc"] == 1) for r in rows if r["method"] != "full")
    assert all(r["status"] == "ok" and 0 <= r["test_acc"] <= 100 for r in rows)
    check_golden("selection", rows)
    assert all(r["protocol"] == "dc" and r["budget"] == "smoke" and r["arch"] == "convnet3" for r in rows)
    assert all(r["versions"]["torch"] == "2.14.1" or r["versions"]["torch"].startswith("2.14.1") for r in rows)
    assert "random" in first.stdout and "IPC 5" in first.stdout  # the closing leaderboard

    second = bench("run", "--methods", "random,herding[teacher_steps=100]", *GRID)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "all 10 runs were already done" in second.stdout
    again = results(store)
    assert {r["run_hash"]: r["created_at"] for r in again} == {r["run_hash"]: r["created_at"] for r in rows}

    out_dir = tmp_path / "boards"
    board = bench("leaderboard", "--out", str(out_dir))
    assert board.returncode == 0, board.stderr
    page = (out_dir / "digits__dc-smoke.md").read_text()
    assert "random" in page and "± " in page and "(2)" in page

    export = bench("export", "--method", "random", "--dataset", "digits", "--ipc", "5", "--seed", "1",
                   "--out", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr
    import torch
    from safetensors.torch import load_file

    saved = load_file(next((tmp_path / "export").glob("*.safetensors")))
    assert saved["images"].shape == (50, 1, 8, 8) and saved["labels"].dtype == torch.long
    assert 0 <= float(saved["images"].min()) and float(saved["images"].max()) <= 1
    assert next((tmp_path / "export").glob("*.png")).stat().st_size > 0
    # both files are for sharing: the same permissions (the umask's), not safetensors' own 0600
    modes = {f.suffix: f.stat().st_mode & 0o777 for f in (tmp_path / "export").iterdir()}
    assert modes[".safetensors"] == modes[".png"] == 0o666 & ~_umask(), modes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failing_trial_does_not_stop_the_grid(bench_env):
    store, _ = bench_env
    env = {"BENCH_METHOD_MODULES": "bench_test_methods",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    out = bench("run", "--methods", "random,always-fails", "--datasets", "digits", "--ipc", "1",
                "--seeds", "1", "--budget", "smoke", extra_env=env)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 runs failed" in out.stdout and "this method fails on purpose" in out.stdout
    ok = results(store)
    assert sorted((r["method"], r["status"]) for r in ok) == [("full", "ok"), ("random", "ok")]
    errors = json.loads(bench("results", "--json", "--errors", extra_env=env).stdout)
    assert [(e["method"], e["ipc"], e["status"]) for e in errors] == [("always-fails", 1, "error")]
    assert "RuntimeError: this method fails on purpose" in errors[0]["error"]
    assert errors[0]["config"]["method"] == "always-fails"  # the run spec is stored with the error


def test_export_then_eval_reproduces_the_original_accuracy(bench_env, tmp_path):
    store, _ = bench_env
    grid = ["--datasets", "digits", "--ipc", "5", "--seeds", "1", "--budget", "smoke", "--no-references"]
    assert bench("run", "--methods", "random", *grid).returncode == 0
    original = [r for r in results(store) if r["method"] == "random"][0]
    out = tmp_path / "export"
    assert bench("export", "--method", "random", "--dataset", "digits", "--ipc", "5", "--seed", "0",
                 "--out", str(out)).returncode == 0
    pt = next(out.glob("*.safetensors"))
    scored = bench("eval", "--data", str(pt), "--dataset", "digits", "--budget", "smoke", "--seeds", "1",
                   "--name", "released", "--no-references")
    assert scored.returncode == 0, scored.stderr[-3000:]
    external = [r for r in results(store) if r["method"] == "external:released"]
    assert len(external) == 1 and external[0]["ipc"] == 5
    assert external[0]["test_acc"] == original["test_acc"]


def test_eval_refuses_a_broken_set(bench_env, tmp_path):
    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"images": torch.rand(20, 1, 8, 8), "labels": torch.full((20,), 12)}, bad)
    out = bench("eval", "--data", str(bad), "--dataset", "digits", "--budget", "smoke")
    assert out.returncode == 2 and "is a pickle file, which can run code" in out.stderr  # not read at all
    out = bench("eval", "--data", str(bad), "--dataset", "digits", "--budget", "smoke", "--trust-pickle")
    assert out.returncode == 2 and "labels fall outside 0..9" in out.stderr and "Traceback" not in out.stderr
    torch.save({"images": torch.rand(20, 1, 8, 8), "labels": torch.arange(20) % 5}, bad)
    out = bench("eval", "--data", str(bad), "--dataset", "digits", "--budget", "smoke", "--trust-pickle")
    assert out.returncode == 2 and "no images for classes [5, 6, 7, 8, 9]" in out.stderr


SMOKE_BASES = ("dit[recipe=smoke]", "d4m[recipe=smoke]", "minimax[ft_steps=30,recipe=smoke]", "mgd3[recipe=smoke]")
SMOKE_EVLF = "ffn=64,heads=2,train_steps=30,width=32"
SMOKE_VARIANTS = ("dit+evlf[adapt_steps=20,ffn=64,heads=2,recipe=smoke,train_steps=30,width=32]",
                  *(b.replace("[", "+evlf[").replace("]", f",{SMOKE_EVLF}]") for b in SMOKE_BASES[1:]))
SMOKE_GENERATIVE = (*SMOKE_BASES, *SMOKE_VARIANTS)


def test_generative_methods_end_to_end(bench_env, tmp_path):
    store, cache = bench_env
    grid = ("--methods", ",".join(SMOKE_GENERATIVE), "--datasets", "digits", "--ipc", "2", "--seeds", "1",
            "--budget", "smoke", "--no-references")
    before = json.loads(bench("plan", *grid, "--json").stdout)["shared"]
    assert [s["stage"] for s in before] == [  # what the driver builds, once each, before the trials
        "small/smoke autoencoder", "small/smoke class denoiser", "teacher convnet3 width 32, 50 steps",
        "small/smoke text denoiser", "latents of the training split", "minimax fine-tuning", "evlf module",
        "latents of the training split on evlf latents", "dit fine-tuning on evlf latents",
        "minimax fine-tuning on evlf latents"]
    assert not any(s["cached"] for s in before)
    out = bench("run", *grid, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(bench("plan", *grid, "--json").stdout)["shared"] == []  # nothing left to run: nothing to build
    from benchmark.grid.calibration import shared_costs
    from benchmark.grid.estimate import plan_stages
    from benchmark.grid.plan import plan_runs
    from benchmark.cli import build_parser
    from benchmark.cli.args import grid_request
    from core.artifacts import ArtifactCache
    from core.runs import group_jobs

    runs = plan_runs(grid_request(build_parser().parse_args(["plan", *grid]))).runs
    stages = plan_stages(group_jobs(runs), ArtifactCache(cache))
    assert [s.name for s in stages] == [s["stage"] for s in before]
    assert all(s.cached(ArtifactCache(cache)) for s in stages)  # each found where the run put it
    built = shared_costs(stages, ArtifactCache(cache), "cpu")
    assert len(built) == len(before) and all(0 < s < 600 for [s] in built.values())  # each one's build_s
    rows = results(store)
    from methods import resolve_method

    assert sorted(r["method"] for r in rows) == sorted(resolve_method(m).label for m in SMOKE_GENERATIVE)
    assert all(r["status"] == "ok" and r["metrics"]["images"] == 20 and r["recognizability"] is not None
               for r in rows)
    check_golden("generative", rows)
    configs = [r["config"]["method_config"] for r in rows]
    assert all(c["preset"] == "small" and c["options"]["steps"] == 50 for c in configs)  # resolved presets
    assert (cache / "backbone").is_dir() and (cache / "finetuned-denoiser").is_dir()  # trained once, cached
    assert len(list((cache / "evlf-fusion").glob("*.safetensors"))) == 1  # one module serves every variant
    assert len(list((cache / "backbone").glob("*.safetensors"))) == 1
    export = bench("export", "--method", "mgd3[recipe=smoke]", "--dataset", "digits", "--ipc", "2",
                   "--out", str(tmp_path / "export"))
    assert export.returncode == 0, export.stderr
    from safetensors import safe_open

    with safe_open(str(next((tmp_path / "export").glob("*.safetensors"))), framework="pt") as f:
        images, labels, meta = f.get_tensor("images"), f.get_tensor("labels"), json.loads(f.metadata()["evlf-bench/meta"])
    assert images.shape == (20, 1, 8, 8) and labels.tolist() == [c for c in range(10) for _ in (0, 1)]
    assert meta["hook"] == "vae-mean" and meta["seed"] == 0
    boards = tmp_path / "boards"
    assert bench("leaderboard", "--out", str(boards)).returncode == 0
    page = (boards / "digits__dc-smoke.md").read_text()
    grids = sorted((boards / "samples").glob("digits__dc-smoke__*.png"))
    assert len(grids) == len(SMOKE_GENERATIVE) and all(f"(samples/{g.name})" in page for g in grids)
    from PIL import Image

    assert Image.open(grids[0]).size == (2 * 9 + 1, 10 * 9 + 1)  # IPC 2 across, 10 classes down, 1-px gaps
    before = {g.name: g.read_bytes() for g in grids}
    assert bench("leaderboard", "--out", str(boards)).returncode == 0  # regenerating rewrites the same files
    assert {g.name: g.read_bytes() for g in grids} == before and (boards / "digits__dc-smoke.md").read_text() == page

    shown = bench("show", SMOKE_VARIANTS[1], "--dataset", "digits", "--json", "--plot", str(tmp_path / "curves.png"))
    assert shown.returncode == 0, shown.stderr
    [evlf] = json.loads(shown.stdout)["plugins"]
    assert evlf["status"] == "trained" and evlf["steps"] == 30 and len(evlf["curve"]["info_nce"]) == 30
    assert 0 <= evlf["held_out"]["retrieval_fused"] <= 1 and evlf["held_out"]["fused_mse"] >= 0
    rows = {r["name"]: r["value"] for r in evlf["rows"]}  # the plug-in's own figures, printed as given
    assert rows["class retrieval: fused"] == evlf["held_out"]["retrieval_fused"] and rows["training steps"] == 30
    text = bench("show", SMOKE_VARIANTS[1], "--dataset", "digits")
    assert text.returncode == 0 and "class retrieval: fused" in text.stdout and "curve: InfoNCE" in text.stdout
    assert (tmp_path / "curves.png").stat().st_size > 0


FIELD = ("kcenter[teacher_steps=100]", "dc[budget=smoke]", "dsa[budget=smoke]", "dm[budget=smoke]")


def test_the_field_methods_run_end_to_end_and_refuse_what_their_loops_cannot_do(bench_env):
    store, _ = bench_env
    refused = bench("run", "--methods", "dc", "--datasets", "digits", "--ipc", "2", "--budget", "smoke")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "no outer/inner loops for IPC 2" in refused.stderr
    out = bench("run", "--methods", ",".join(FIELD), "--datasets", "digits", "--ipc", "2", "--seeds", "1",
                "--budget", "smoke", "--no-references")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = results(store)
    assert sorted(r["method"] for r in rows) == sorted(FIELD)
    assert all(r["status"] == "ok" and r["metrics"]["images"] == 20 and 0 <= r["test_acc"] <= 100 for r in rows)
    configs = {r["method"]: r["config"]["method_config"] for r in rows}
    assert configs["dc[budget=smoke]"]["options"]["iterations"] == 2  # the budget's values, resolved
    assert configs["dsa[budget=smoke]"]["options"]["dsa"] and configs["dsa[budget=smoke]"]["options"]["init"] == "real"
    assert configs["dm[budget=smoke]"]["options"]["batch_real"] == 32
