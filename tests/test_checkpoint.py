"""Preparation killed midway resumes from its last checkpoint and ends with the weights an
uninterrupted run gives; the checkpoint is gone once the loop finishes."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from core.artifacts import ArtifactCache
from methods.checkpoint import KIND, Batches, LoopCheckpoint
from methods.diffusion.small import RECIPES, build_models
from methods.diffusion.training import Optim, train_denoiser, train_vae

OPTIM = Optim(steps=12, batch_size=5, lr=1e-2, warmup=3)  # 13 items: uneven batches over several epochs


class Killed(Exception):
    pass


def _killer(at: int, seen: list[int]):
    def progress(phase, step, steps):
        seen.append(step)
        if step == at:
            raise Killed

    return progress


def _denoiser_run(cache, progress):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 2, 3, padding=1)
    latents = torch.randn(13, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    scheduler = DDPMScheduler(num_train_timesteps=100)
    averaged, result = train_denoiser(model, latents, scheduler, lambda z, t, idx, drop: model(z), OPTIM, 0.1, 0.9,
                                      seed=3, progress=progress, phase="denoiser",
                                      checkpoint=LoopCheckpoint(cache, "part", every_s=0.0))
    return averaged.state_dict() | {f"live.{k}": v for k, v in model.state_dict().items()}, result


def _vae_run(cache, progress):
    torch.manual_seed(0)
    vae, _, _ = build_models(RECIPES.get("smoke"), channels=1, num_classes=2, text_dim=8)
    images = torch.rand(13, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result = train_vae(vae, images, OPTIM, 1e-3, seed=3, progress=progress,
                       checkpoint=LoopCheckpoint(cache, "vae", every_s=0.0))
    return vae.state_dict(), result


@pytest.mark.parametrize("run", [_denoiser_run, _vae_run], ids=["denoiser", "vae"])
def test_a_loop_killed_midway_resumes_to_the_same_weights(run, tmp_path):
    whole, whole_result = run(None, lambda *a: None)
    cache = ArtifactCache(tmp_path)
    seen: list[int] = []
    with pytest.raises(Killed):
        run(cache, _killer(7, seen))
    assert list((tmp_path / KIND).glob("*.safetensors"))  # the state after step 7 is on disk
    resumed, result = run(cache, _killer(-1, seen))
    assert seen == list(range(1, 13))  # steps 8..12 only: nothing done twice
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert result.final_loss == whole_result.final_loss
    assert not list((tmp_path / KIND).glob("*.safetensors"))  # finished: the checkpoint is deleted


def test_batches_draw_what_an_epoch_split_draws_and_resume_mid_epoch():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = [b for _ in range(3) for b in torch.randperm(7, generator=g1).split(3)]
    batches = Batches(7, 3, g2)
    got = [next(batches) for _ in range(4)]
    state, generator_state = batches.state_dict(), g2.get_state()
    again = Batches(7, 3, torch.Generator().set_state(generator_state))
    again.load_state_dict(state)
    got += [next(again) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected)) and len(got) == len(expected)


def _finetune_run(cache, progress):
    from methods.diffusion.finetune import FinetuneConfig, finetune
    from methods.minimax import MinimaxLoss

    torch.manual_seed(0)
    _, dit, _ = build_models(RECIPES.get("smoke"), channels=1, num_classes=3, text_dim=8)
    latents = torch.randn(32, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat(11)[:32]
    from methods.diffusion.small import scheduler_config

    model, log = finetune(dit, latents, labels, scheduler_config(RECIPES.get("smoke")),
                          FinetuneConfig(steps=12, batch_size=8, lr=1e-2, ema_decay=0.5), null_label=3,
                          extra_loss=MinimaxLoss(3, 4, 0.002, 0.008), progress=progress,
                          checkpoint=LoopCheckpoint(cache, "ft", every_s=0.0))
    return model.state_dict(), log


def test_fine_tuning_killed_midway_resumes_to_the_same_weights_and_memories(tmp_path):
    whole, whole_log = _finetune_run(None, lambda *a: None)
    cache = ArtifactCache(tmp_path)
    seen: list[int] = []
    with pytest.raises(Killed):
        _finetune_run(cache, _killer(5, seen))
    resumed, log = _finetune_run(cache, _killer(-1, seen))
    assert seen == list(range(1, 13))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert log["final_loss"] == whole_log["final_loss"] and log["first_loss"] == whole_log["first_loss"]
    assert not list((tmp_path / KIND).glob("*.safetensors"))
