"""Paper scale, rehearsed: the pretrained backbones' miniatures (exact classes, layouts and
configs of Stable Diffusion v1.5, DiT-XL/2-256 and sd-vae-ft-mse, tiny widths) and ImageWoof,
ImageNette and ImageIDC trees with the real wnids, driven through the real CLI, Ray and store
with the `bench run` lines of `leaderboards/reported.md` (one grid per data set; the `smoke`
budget, 2 IPCs, 1 seed, 32 or 64 px, step counts shrunk)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.datasets.imagefolder import IMAGENETTE, IMAGEWOOF
from core.datasets.imagenet import imagenet_name

FAST = "steps=4"
EVLF = "diag_images=10,ffn=32,heads=2,train_steps=4,width=16"
METHODS = ("random", f"dit[backbone=dit-xl-2-256,{FAST}]", f"mgd3[backbone=dit-xl-2-256,{FAST}]",
           f"minimax[backbone=dit-xl-2-256,ft_batch=4,ft_steps=3,{FAST}]", f"d4m[backbone=sd15,{FAST}]",
           f"d4m+evlf[backbone=sd15,{EVLF},{FAST}]",
           # EVLF on the class-conditional DiT reads prompts through SD v1.5's CLIP, as the authors' pipeline
           f"mgd3+evlf[backbone=dit-xl-2-256,{EVLF},{FAST}]",
           f"minimax+evlf[backbone=dit-xl-2-256,ft_batch=4,ft_steps=3,{EVLF},{FAST}]")


def _bench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


@pytest.fixture
def weights_env(sd15_dir, dit_dirs, bench_env) -> dict[str, str]:
    dit_dir, vae_dir = dit_dirs
    return dict(os.environ, BENCH_SD15=str(sd15_dir), BENCH_DIT_XL_2_256=str(dit_dir),
                BENCH_SD_VAE_FT_MSE=str(vae_dir))


def _check(rows: list[dict], archs: int, expected_wnids: dict[str, tuple[str, ...] | None]) -> None:
    assert len(rows) == len(METHODS) * 2 * archs * len(expected_wnids) and all(r["status"] == "ok" for r in rows)
    assert {r["metrics"]["images"] for r in rows} == {10, 20}
    for row in rows:  # where the classes' names and ImageNet ids came from is part of the run's identity
        conditioning = row["config"]["conditioning"]
        assert conditioning["prompts"].startswith("ImageNet-1k") and len(conditioning["wnids"]) == 10
        wnids = expected_wnids[row["dataset"].split("[")[0]]
        assert wnids is None or conditioning["wnids"] == list(wnids)
    dit_rows = [r for r in rows if r["method"].startswith(("dit", "mgd3", "minimax"))]
    assert all(r["config"]["method_config"]["backbone_sampling"]["guided_channels"] == 3 for r in dit_rows)


def test_the_imagewoof_lines_of_reported_md_run_on_miniatures(weights_env, imagewoof_root):
    # ConvNet-6, ResNetAP-10 and ResNet-18 as the ImageWoof columns; ConvNet-6 needs 64 px
    out = _bench(weights_env, "run", "--methods", ",".join(METHODS), "--datasets",
                 f"imagewoof[root={imagewoof_root},size=64]", "--ipc", "1,2", "--archs", "convnet6,resnetap10,resnet18",
                 "--protocol", "idc", "--budget", "smoke", "--seeds", "1", "--no-references", "--no-leaderboard")
    assert out.returncode == 0, out.stderr[-3000:]
    _check(json.loads(_bench(weights_env, "results", "--json").stdout), 3, {"imagewoof": IMAGEWOOF})
    assert imagenet_name(IMAGEWOOF[0]) == "Australian terrier"


def test_the_imagenette_and_imageidc_lines_of_reported_md_run_on_miniatures(weights_env, imagenette_root,
                                                                            imageidc_root):
    root, classes = imageidc_root  # ResNetAP-10 as their columns, at 32 px, both data sets in one grid
    datasets = f"imagenette[root={imagenette_root},size=32],imageidc[root={root},classes={classes},size=32]"
    out = _bench(weights_env, "run", "--methods", ",".join(METHODS), "--datasets", datasets, "--ipc", "1,2",
                 "--archs", "resnetap10", "--protocol", "idc", "--budget", "smoke", "--seeds", "1", "--no-references",
                 "--no-leaderboard")
    assert out.returncode == 0, out.stderr[-3000:]
    _check(json.loads(_bench(weights_env, "results", "--json").stdout), 1,
           {"imagenette": IMAGENETTE, "imageidc": None})


@pytest.mark.parametrize("method", ["mgd3[backbone=dit-xl-2-256]", "minimax[backbone=dit-xl-2-256]"])
def test_a_data_set_without_imagenet_classes_is_refused_on_the_dit(method, bench_env):
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--methods", method, "--datasets", "digits",
                          "--budget", "smoke"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "are not ImageNet wnids" in out.stderr and "Traceback" not in out.stderr
