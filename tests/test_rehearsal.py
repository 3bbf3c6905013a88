"""Paper scale, rehearsed: the pretrained backbones' miniatures (exact classes, layouts and
configs of Stable Diffusion v1.5, DiT-XL/2-256 and sd-vae-ft-mse, tiny widths) and an
ImageWoof tree with the real wnids, driven through the real CLI, Ray and store with the
papers' spellings of the methods (only step counts shrunk)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.datasets.imagefolder import IMAGEWOOF
from core.datasets.imagenet import imagenet_name

FAST = "steps=4"
EVLF = "diag_images=10,ffn=32,heads=2,train_steps=4,width=16"
METHODS = (f"dit[backbone=dit-xl-2-256,{FAST}]", f"mgd3[backbone=dit-xl-2-256,{FAST}]",
           f"minimax[backbone=dit-xl-2-256,ft_batch=4,ft_steps=3,{FAST}]", f"d4m[backbone=sd15,{FAST}]",
           f"d4m+evlf[backbone=sd15,{EVLF},{FAST}]",
           # EVLF on the class-conditional DiT reads prompts through SD v1.5's CLIP, as the authors' pipeline
           f"mgd3+evlf[backbone=dit-xl-2-256,{EVLF},{FAST}]",
           f"minimax+evlf[backbone=dit-xl-2-256,ft_batch=4,ft_steps=3,{EVLF},{FAST}]")


def test_pretrained_methods_run_on_imagewoof_through_the_cli(sd15_dir, dit_dirs, imagewoof_root, bench_env):
    store, _ = bench_env
    dit_dir, vae_dir = dit_dirs
    env = dict(os.environ, BENCH_SD15=str(sd15_dir), BENCH_DIT_XL_2_256=str(dit_dir), BENCH_SD_VAE_FT_MSE=str(vae_dir))
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--methods", ",".join(METHODS),
                          "--datasets", f"imagewoof[root={imagewoof_root},size=16]", "--ipc", "1,2", "--seeds", "1",
                          "--budget", "smoke", "--no-references", "--no-leaderboard"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(subprocess.run([sys.executable, "-m", "benchmark.cli", "results", "--json", "--store", str(store)],
                                     capture_output=True, text=True, env=env, timeout=120).stdout)
    assert len(rows) == len(METHODS) * 2 and all(r["status"] == "ok" for r in rows)
    assert {r["metrics"]["images"] for r in rows} == {10, 20}
    for row in rows:  # where the classes' names and ImageNet ids came from is part of the run's identity
        conditioning = row["config"]["conditioning"]
        assert conditioning["wnids"] == list(IMAGEWOOF) and conditioning["prompts"].startswith("ImageNet-1k")
    assert imagenet_name(IMAGEWOOF[0]) == "Australian terrier"


@pytest.mark.parametrize("method", ["mgd3[backbone=dit-xl-2-256]", "minimax[backbone=dit-xl-2-256]"])
def test_a_data_set_without_imagenet_classes_is_refused_on_the_dit(method, bench_env):
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--methods", method, "--datasets", "digits",
                          "--budget", "smoke"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "are not ImageNet wnids" in out.stderr and "Traceback" not in out.stderr
