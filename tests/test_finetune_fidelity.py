"""Minimax's DiT-XL/2 fine-tuning as its code does it, checked against hand computations on tiny
tensors: the variational-bound term, per-channel scale factors folded exactly, one shared
timestep and class embedder, and an EMA that starts from the pretrained weights."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from methods.diffusion.finetune import MINIMAX_DIT, BlockScales, FinetuneConfig, Fidelity, finetune, vb_term

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_dit(layers: int = 2):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    # out_channels = 2 x 4: noise and variance, as DiT-XL/2 predicts them
    return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=8,
                                 num_layers=layers, sample_size=4, patch_size=2, num_embeds_ada_norm=10).eval()


def dit_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")  # DiT's training schedule


def test_vb_term_is_the_gaussian_kl_in_bits_and_the_decoder_nll_at_t0():
    scheduler = dit_scheduler()
    g = torch.Generator().manual_seed(0)
    z0, noisy, eps = (torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64) * 0.5 for _ in range(3))
    values = torch.rand(3, 2, 2, 2, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([0, 5, 999])
    a0 = scheduler.alphas_cumprod[0].double()
    # at t = 0 let the prediction land near z0 (else every bin has probability 0)
    noisy[0] = a0.sqrt() * (z0[0] + 0.004 * torch.randn(2, 2, 2, generator=g, dtype=torch.float64)) \
        + (1 - a0).sqrt() * eps[0]
    got = vb_term(scheduler, z0, noisy, t, eps, values)
    a = scheduler.alphas_cumprod.double()
    for i, step in enumerate(t.tolist()):
        a_t, a_prev = a[step], (a[step - 1] if step else torch.tensor(1.0, dtype=torch.float64))
        beta = 1 - a_t / a_prev
        post_var = beta * (1 - a_prev) / (1 - a_t) if step else (scheduler.betas[1].double() * (1 - a[0]) / (1 - a[1]))

        def mean_of(x0):
            return a_prev.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * noisy[i]

        x0_hat = (noisy[i] - (1 - a_t).sqrt() * eps[i]) / a_t.sqrt()
        frac = (values[i] + 1) / 2
        log_var = frac * beta.log() + (1 - frac) * post_var.log()
        model = Normal(mean_of(x0_hat), (0.5 * log_var).exp())
        if step:
            expected = kl_divergence(Normal(mean_of(z0[i]), post_var.sqrt()), model).mean() / math.log(2)
        else:  # bin of width 2/255 around each value (open beyond +-0.999), with the exact normal CDF
            x = z0[i]
            upper, lower = model.cdf(x + 1 / 255), model.cdf(x - 1 / 255)
            prob = torch.where(x < -0.999, upper, torch.where(x > 0.999, 1 - lower, upper - lower))
            assert bool(((x < -0.999) | (x > 0.999)).any())  # both kinds of bin are exercised
            expected = -prob.log().mean() / math.log(2)
        assert float(got[i]) == pytest.approx(float(expected), rel=1e-3)


def test_per_channel_scales_fold_into_the_weights_exactly():
    model = tiny_dit()
    x, t, y = torch.randn(2, 4, 4, 4), torch.tensor([3, 700]), torch.tensor([1, 4])
    scales = BlockScales(list(model.transformer_blocks)[:1], per_channel=True)
    assert [tuple(p.shape) for p in scales.factors()] == [(1, 8), (1, 8), (1, 24), (1, 8)]
    with torch.no_grad():
        for p in scales.factors():
            p.uniform_(0.5, 1.5)
    q_weight = model.transformer_blocks[0].attn1.to_q.weight.clone()
    scales.attach()
    with torch.no_grad():
        hooked = model(x, timestep=t, class_labels=y).sample
    scales.fold()
    with torch.no_grad():
        plain = model(x, timestep=t, class_labels=y).sample
    assert torch.allclose(hooked, plain, atol=1e-5)
    # row c of the query projection carries factor c of the query's third of the qkv factors
    assert torch.allclose(model.transformer_blocks[0].attn1.to_q.weight, q_weight * scales.qkv[0, :8].view(-1, 1))


def _tuned(fidelity: Fidelity, steps: int = 3, ema_decay: float = 0.9999, **kw):
    g = torch.Generator().manual_seed(1)
    latents, labels = torch.randn(16, 4, 4, 4, generator=g), torch.arange(16) % 10
    config = FinetuneConfig(steps=steps, batch_size=8, lr=1e-2, ema_decay=ema_decay, fidelity=fidelity, **kw)
    return finetune(tiny_dit(), latents, labels, dit_scheduler().config, config, null_label=10)


def test_one_shared_embedder_is_trained_for_all_blocks():
    base = tiny_dit()
    tables = [b.norm1.emb.class_embedder.embedding_table.weight for b in base.transformer_blocks]
    assert not torch.equal(tables[0], tables[1])  # the miniature's blocks start with different tables
    shared, _ = _tuned(dataclasses.replace(Fidelity(), shared_embedder=True), ema_decay=0.0)
    after = [b.norm1.emb.class_embedder.embedding_table.weight for b in shared.transformer_blocks]
    assert torch.equal(after[0], after[1]) and not torch.equal(after[0], tables[0])
    separate, _ = _tuned(Fidelity(), ema_decay=0.0)
    after = [b.norm1.emb.class_embedder.embedding_table.weight for b in separate.transformer_blocks]
    assert not torch.equal(after[0], after[1])


def test_the_ema_starts_from_the_pretrained_weights_with_a_constant_decay():
    base = tiny_dit()
    bias = "transformer_blocks.1.ff.net.2.bias"  # a trained parameter of an unscaled block
    before = base.state_dict()[bias]
    fidelity = dataclasses.replace(Fidelity(), ema_from_pretrained=True)
    one_step, _ = _tuned(fidelity, steps=1, ema_decay=0.0)  # the average is the weights themselves
    averaged, _ = _tuned(fidelity, steps=1, ema_decay=0.9)
    expected = 0.9 * before + 0.1 * one_step.state_dict()[bias]
    assert torch.allclose(averaged.state_dict()[bias], expected, atol=1e-7)
    ramped, _ = _tuned(Fidelity(), steps=1, ema_decay=0.9)  # ramp: decay (1 + 1) / (10 + 1) on the first update
    assert torch.allclose(ramped.state_dict()[bias], 2 / 11 * before + 9 / 11 * one_step.state_dict()[bias], atol=1e-7)


def test_the_variational_bound_trains_the_variance_output():
    base = tiny_dit()

    def variance_bias(model) -> torch.Tensor:
        # proj_out_2 gives patch x patch x 8 values per token; channels 4..7 are the variance
        return model.proj_out_2.bias.detach().view(-1, 8)[:, 4:].clone()

    before = variance_bias(base)

    def variance_after(fidelity: Fidelity) -> torch.Tensor:
        return variance_bias(_tuned(fidelity, ema_decay=0.0)[0])

    assert torch.equal(variance_after(Fidelity()), before)  # the noise loss never reaches it
    assert not torch.equal(variance_after(dataclasses.replace(Fidelity(), vb_term=True)), before)


def test_the_pretrained_preset_is_minimax_code_and_is_recorded_in_the_row_config():
    from methods.registry import resolve_method

    assert MINIMAX_DIT == Fidelity(scales="channel", shared_embedder=True, ema_from_pretrained=True, vb_term=True)
    pretrained = resolve_method("minimax[backbone=dit-xl-2-256]").distiller
    assert pretrained.config()["finetune_fidelity"] == dataclasses.asdict(MINIMAX_DIT)
    assert "finetune_fidelity" not in resolve_method("minimax").distiller.config()  # small: as before
    assert "finetune_fidelity" not in resolve_method("dit[backbone=dit-xl-2-256]").distiller.config()  # no tuning
    assert "finetune_fidelity" in resolve_method("dit[backbone=dit-xl-2-256,adapt_steps=5]").distiller.config()
