"""`bench pretrain` and the small backbone family, end to end on `digits` with the `smoke` recipe."""
from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from benchmark.cli import main
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from methods.diffusion import get_backbone

KEYS = {"recon_mse", "teacher_acc_recon", "teacher_acc_real", "sample_acc_class_denoiser",
        "sample_acc_text_denoiser", "train_seconds", "params_vae", "params_class_denoiser", "params_text_denoiser"}


pytestmark = pytest.mark.usefixtures("one_thread")


def pretrain(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["pretrain", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pretrain_smoke_trains_reports_then_loads_from_the_cache(bench_env, capsys):
    _, cache_dir = bench_env
    code, out, err = pretrain(capsys, "--dataset", "digits", "--recipe", "smoke", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert KEYS <= set(first) and first["cached"] is False
    assert all(first[k] > 0 for k in ("params_vae", "params_class_denoiser", "params_text_denoiser"))
    assert 0 <= first["recon_mse"] < 0.2 and first["train_seconds"] > 0
    for key in ("teacher_acc_recon", "sample_acc_class_denoiser", "sample_acc_text_denoiser"):
        assert 0 <= first[key] <= 100
    # The headline accuracies are the first sampler's (DDPM); DDIM is reported beside them.
    assert first["sampler"] == "ddpm" and set(first["sample_acc_by_sampler"]) == {"ddpm", "ddim"}
    assert first["sample_acc_by_sampler"]["ddpm"] == {"class": first["sample_acc_class_denoiser"],
                                                      "text": first["sample_acc_text_denoiser"]}
    # Progress bars go to stderr, the report alone to stdout.
    assert "VAE" in err and "class DiT" in err and "text UNet" in err
    grids = {k: first["files"][f"grid_{k}_denoiser"] for k in ("class", "text")}
    report_dir = cache_dir / "backbone" / first["backbone_key"]
    for path in grids.values():
        assert path.startswith(str(report_dir))
        with Image.open(path) as png:  # 10 classes x 4 samples of 8x8 with 1-pixel padding
            assert png.size == (4 * 9 + 1, 10 * 9 + 1)
    assert json.loads((report_dir / "report.json").read_text())["recon_mse"] == first["recon_mse"]

    (report_dir / "samples_text_denoiser.png").unlink()
    started = time.perf_counter()
    code, out, err = pretrain(capsys, "--dataset", "digits", "--recipe", "smoke", "--json")
    assert code == 0, err
    second = json.loads(out)
    assert second["cached"] is True and time.perf_counter() - started < 10
    assert {k: second[k] for k in KEYS} == {k: first[k] for k in KEYS}
    assert (report_dir / "samples_text_denoiser.png").exists()  # rewritten from the cached grid

    code, out, err = pretrain(capsys, "--dataset", "digits", "--recipe", "smoke")
    assert code == 0 and "text UNet samples" in out and "DDPM" in out and "loaded from the cache" in out
    assert "small[recipe=smoke] backbone of digits" in out

    # What `bench run` will call: the same cached backbone, ready for sampling.
    backbone = get_backbone(load_dataset("digits"), "small", cache=ArtifactCache(cache_dir), recipe="smoke")
    assert backbone.info["cached"] is True and backbone.key == first["backbone_key"]
    assert backbone.name == "small[recipe=smoke]" and backbone.denoisers() == ["class", "text"]
    assert backbone.latent_scale == pytest.approx(first["latent_scale"], abs=1e-5) and backbone.latent_scale != 1.0
    assert not backbone.vae.training and not backbone.class_denoiser.training


def test_unknown_recipe_is_one_line(bench_env, capsys):
    code, _, err = pretrain(capsys, "--dataset", "digits", "--recipe", "tiny")
    assert code == 2 and err.count("\n") == 1
    assert "unknown backbone recipe 'tiny'" in err and "smoke" in err


def test_too_few_images_per_class(bench_env, capsys, tmp_path):
    _, cache_dir = bench_env
    for split, n in (("train", 4), ("val", 2)):
        for k, cls in enumerate(("ant", "bee")):
            (tmp_path / "tree" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (80 * k, 10 * i, 0)).save(tmp_path / "tree" / split / cls / f"{i}.png")
    code, _, err = pretrain(capsys, "--dataset", f"imagefolder:{tmp_path / 'tree'}[size=8]", "--recipe", "smoke")
    assert code == 2 and err.count("\n") == 1
    assert "needs at least 5 per class to train" in err
    assert not (cache_dir / "backbone").exists()  # nothing written, half or whole


@pytest.mark.parametrize("argv", [["pretrain", "--dataset", "no-such-data"], ["pretrain", "--json", "extra"]])
def test_other_bad_input(bench_env, capsys, argv):
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_only_the_denoisers_asked_for_are_trained_and_each_trains_the_same_alone(tmp_path):
    """`dit` never trains the text UNet; a denoiser trained later, or with the other, is the same."""
    import torch

    data = load_dataset("digits")
    alone = ArtifactCache(tmp_path / "alone")
    dit_only = get_backbone(data, "small", cache=alone, recipe="smoke", denoisers=("class",))
    assert dit_only.text_denoiser is None and dit_only.class_denoiser is not None
    parts = [alone.meta("backbone-denoiser", p.stem)["meta"]["denoiser"]
             for p in (tmp_path / "alone" / "backbone-denoiser").glob("*.safetensors")]
    assert parts == ["class"]
    later = get_backbone(data, "small", cache=alone, recipe="smoke", denoisers=("class", "text"))
    assert later.info["cached"] is False  # the text UNet had to be trained now; the rest was cached
    together = get_backbone(data, "small", cache=ArtifactCache(tmp_path / "together"), recipe="smoke")
    for kind in ("class", "text"):
        mine, theirs = later.denoiser(kind).state_dict(), together.denoiser(kind).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert torch.equal(dit_only.class_denoiser.state_dict()["pos_embed.proj.weight"],
                       together.class_denoiser.state_dict()["pos_embed.proj.weight"])
