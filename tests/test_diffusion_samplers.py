"""The shared samplers and the diffusion context, on a tiny randomly initialised backbone."""
from __future__ import annotations

import pytest
import torch

from core.errors import BenchError
from methods.diffusion.backbone import Backbone, check_resolution, require_denoiser
from methods.diffusion.context import DiffusionContext
from methods.diffusion.samplers import (ClassGuided, SamplerConfig, StepState, TextGuided, make_scheduler, sample,
                                        sample_class, sample_text, start_index)
from methods.diffusion.small import RECIPES, build_models

PROMPTS = tuple(f"class {i}" for i in range(10))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone(tiny_backbone_parts) -> Backbone:
    return tiny_backbone_parts(10)


@pytest.fixture(scope="module")
def ctx(backbone) -> DiffusionContext:
    # 6-pixel images padded into the 8-pixel VAE frame.
    return DiffusionContext(backbone, channels=1, image_size=6, prompts=PROMPTS)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ddim_is_deterministic_for_a_seed(ctx):
    labels = torch.tensor([0, 1, 2, 3])
    cfg = SamplerConfig("ddim", steps=6, guidance=3.0)
    a = sample_class(ctx, labels, cfg, gen(1))
    b = sample_class(ctx, labels, cfg, gen(1))
    c = sample_class(ctx, labels, cfg, gen(2))
    assert a.shape == (4, *ctx.backbone.latent_shape)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_ddpm_with_a_passive_callback_matches_no_callback(ctx):
    # The callback path separates mean and noise; it must not change the result or the RNG stream.
    labels = torch.tensor([4, 5])
    cfg = SamplerConfig("ddpm", steps=5, guidance=2.0)
    plain = sample_class(ctx, labels, cfg, gen(3))
    seen = sample_class(ctx, labels, cfg, gen(3), callback=lambda state: None)
    assert torch.allclose(plain, seen, atol=1e-5)


def test_class_guidance_one_is_the_conditional_prediction(backbone):
    model = backbone.class_denoiser
    x, t, y = torch.randn(3, *backbone.latent_shape), torch.tensor(500), torch.tensor([1, 2, 3])
    with torch.no_grad():
        cond = model(x, timestep=t.expand(3), class_labels=y).sample
        uncond = model(x, timestep=t.expand(3), class_labels=torch.full_like(y, 10)).sample
        assert torch.equal(ClassGuided(model, y, 10, 1.0)(x, t), cond)
        assert torch.allclose(ClassGuided(model, y, 10, 3.0)(x, t), uncond + 3.0 * (cond - uncond), atol=1e-5)


def test_text_guidance_one_is_the_conditional_prediction(ctx):
    model = ctx.backbone.text_denoiser
    x, t = torch.randn(2, *ctx.backbone.latent_shape), torch.tensor(300)
    cond, neg = ctx.text_embeds(["class 1", "class 2"]), ctx.text_embeds(["blurry"])
    with torch.no_grad():
        c = model(x, t.expand(2), encoder_hidden_states=cond).sample
        u = model(x, t.expand(2), encoder_hidden_states=neg.expand_as(cond)).sample
        assert torch.equal(TextGuided(model, cond, neg, 1.0)(x, t), c)
        assert torch.allclose(TextGuided(model, cond, neg, 4.0)(x, t), u + 4.0 * (c - u), atol=1e-5)


def test_negative_prompt_changes_text_samples(ctx):
    cfg = SamplerConfig("ddim", steps=4, guidance=4.0)
    a = sample_text(ctx, ["class 1", "class 2"], cfg, gen())
    b = sample_text(ctx, ["class 1", "class 2"], cfg, gen(), negative_prompt="cartoon, anime, painting")
    assert a.shape == b.shape and not torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_callback_runs_once_per_step(ctx, kind):
    calls: list[StepState] = []
    sample_class(ctx, torch.tensor([0, 1]), SamplerConfig(kind, steps=7, guidance=2.0), gen(),
                 callback=calls.append)
    assert [s.index for s in calls] == list(range(7))
    assert all(s.total == 7 for s in calls)
    assert [s.t for s in calls] == sorted({s.t for s in calls}, reverse=True)  # strictly decreasing timesteps
    if kind == "ddim":
        assert all(s.sigma == 0.0 for s in calls)  # eta 0: deterministic steps
    else:
        assert all(s.sigma > 0 for s in calls[:-1]) and calls[-1].sigma == pytest.approx(0.0, abs=1e-6)


def test_callback_moves_the_mean(ctx):
    labels = torch.tensor([0, 1])
    cfg = SamplerConfig("ddim", steps=5, guidance=1.0)
    plain = sample_class(ctx, labels, cfg, gen())
    shift = 0.25

    def last_step_shift(state: StepState) -> torch.Tensor | None:
        # eta 0: the last step's mean is the output, so the shift must show up exactly.
        return state.mean + shift if state.index == state.total - 1 else None

    moved = sample_class(ctx, labels, cfg, gen(), callback=last_step_shift)
    assert torch.allclose(moved, plain + shift, atol=1e-5)


def test_mode_guidance_formula_pulls_towards_a_mode(backbone):
    """The MGD3 update (mean - k * sigma * (x0_hat - mode)) through the hook moves samples to the mode."""
    cfg = SamplerConfig("ddpm", steps=10, guidance=1.0)
    alphas = make_scheduler(backbone.scheduler_config, cfg).alphas_cumprod

    def exact(x, t):  # the exact noise prediction for N(0, I) data: E[eps | x_t] = sqrt(1 - a_t) x_t
        return (1 - alphas[int(t)]).sqrt() * x

    shape, mode = (64, *backbone.latent_shape), torch.ones(1, *backbone.latent_shape)
    run = dict(device=torch.device("cpu"))
    free = sample(exact, shape, backbone.scheduler_config, cfg, gen(5), **run)
    guided = sample(exact, shape, backbone.scheduler_config, cfg, gen(5), **run,
                    callback=lambda s: s.mean - 0.5 * s.sigma * (s.x0_hat - mode))
    assert abs(float(free.mean())) < 0.1 and 0.5 < float(free.std()) < 1.2  # roughly N(0, I)
    assert float(guided.mean()) > 0.3  # pulled towards the mode at +1


@pytest.mark.parametrize("strength", [0.3, 0.7, 1.0])
def test_img2img_starts_at_the_noise_level_of_step_one_minus_strength(ctx, strength):
    steps = 10
    cfg = SamplerConfig("ddim", steps=steps, guidance=1.0)
    init = torch.randn(2, *ctx.backbone.latent_shape, generator=gen(9))
    first: list[StepState] = []
    sample_class(ctx, torch.tensor([1, 2]), cfg, gen(4), init_latents=init, strength=strength,
                 callback=lambda s: first.append(s) if not first else None)
    start = steps - int(steps * strength)
    assert start == start_index(steps, strength) == round(steps * (1 - strength))
    scheduler = make_scheduler(ctx.backbone.scheduler_config, cfg)
    noise = torch.randn(init.shape, generator=gen(4))  # the sampler draws its noise first
    expected = scheduler.add_noise(init, noise, scheduler.timesteps[start:start + 1])
    assert first[0].index == start and first[0].t == int(scheduler.timesteps[start])
    assert torch.allclose(first[0].latents, expected, atol=1e-6)


def test_img2img_bad_strength(ctx):
    init = torch.zeros(1, *ctx.backbone.latent_shape)
    for strength in (0.0, 1.5, 0.05):  # 0.05 x 10 steps runs no step
        with pytest.raises(BenchError, match="strength"):
            sample_class(ctx, torch.tensor([0]), SamplerConfig(steps=10), gen(), init_latents=init,
                         strength=strength)


def test_low_level_sample_is_batched(backbone):
    calls = []

    def predict(x, t):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    sample(predict, (16, *backbone.latent_shape), backbone.scheduler_config, SamplerConfig(steps=3), gen(),
           device=torch.device("cpu"))
    assert calls == [16, 16, 16]  # one forward pass per step for the whole batch


def test_pad_and_crop_round_trip(ctx):
    x = torch.rand(3, 1, 6, 6)
    vae_in = ctx.to_vae_input(x)
    assert vae_in.shape == (3, 1, 8, 8)
    assert torch.all(vae_in[..., 0, :] == -1) and torch.all(vae_in[..., :, -1] == -1)  # black border
    assert torch.allclose(ctx.from_vae_output(vae_in), x)


def test_encode_real_and_decode_shapes(ctx):
    x = torch.rand(5, 1, 6, 6)
    z = ctx.encode_real(x, torch.arange(5))
    assert z.shape == (5, *ctx.backbone.latent_shape)
    posterior = ctx.backbone.vae.encode(ctx.to_vae_input(x)).latent_dist.mean
    assert torch.allclose(z, 0.7 * posterior, atol=1e-5)  # s * E(x).mean
    images = ctx.decode(z)
    assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1


def test_encode_real_is_the_hook_a_plugin_replaces(ctx):
    class Fused(DiffusionContext):
        def encode_real(self, images, labels=None):
            return super().encode_real(images, labels) + labels.view(-1, 1, 1, 1).float()

    fused = Fused(ctx.backbone, channels=1, image_size=6, prompts=PROMPTS)
    x = torch.rand(2, 1, 6, 6)
    assert torch.allclose(fused.encode_real(x, torch.tensor([0, 2])) - ctx.encode_real(x),
                          torch.tensor([0.0, 2.0]).view(-1, 1, 1, 1).expand(2, *ctx.backbone.latent_shape))


def test_grey_images_feed_an_rgb_vae_and_come_back_grey(backbone):
    rgb_vae = build_models(RECIPES.get("smoke"), channels=3, num_classes=10, text_dim=8)[0].eval()
    rgb = Backbone("rgb", "small", rgb_vae, 1.0, 8, backbone.scheduler_config, fit="resize")
    ctx = DiffusionContext(rgb, channels=1, image_size=16)
    x = torch.rand(2, 1, 16, 16)
    assert ctx.to_vae_input(x).shape == (2, 3, 8, 8)  # resized down, repeated to RGB
    assert ctx.decode(ctx.encode_real(x)).shape == (2, 1, 16, 16)
    with pytest.raises(BenchError, match="3-channel"):
        DiffusionContext(backbone, channels=3, image_size=8)


def test_missing_denoiser_is_a_clear_error(backbone):
    class_only = Backbone("class-only", "pretrained", backbone.vae, 1.0, 8, backbone.scheduler_config,
                          class_denoiser=backbone.class_denoiser)

    class TextMethod:
        name = "d4m"
        needs_denoiser = "text"

    class ClassMethod:
        name = "dit"
        needs_denoiser = "class"

    assert require_denoiser(ClassMethod(), class_only) is backbone.class_denoiser
    with pytest.raises(BenchError, match="method 'd4m' needs a text-conditional denoiser.*has: class"):
        require_denoiser(TextMethod(), class_only)
    ctx = DiffusionContext(class_only, channels=1, image_size=8, prompts=PROMPTS)
    with pytest.raises(BenchError, match="no text-conditional denoiser"):
        sample_text(ctx, ["class 1"], SamplerConfig(steps=2), gen())


def test_resolution_the_vae_cannot_take(backbone):
    with pytest.raises(BenchError, match="cannot take resolution 10: it must be a positive multiple of 4"):
        check_resolution("tiny", 10, 2, [backbone.class_denoiser, backbone.text_denoiser])
    check_resolution("tiny", 16, 2, [backbone.class_denoiser, backbone.text_denoiser])


def test_bad_class_labels_are_refused(ctx):
    with pytest.raises(BenchError, match="class labels must be in 0..9"):
        sample_class(ctx, torch.tensor([10]), SamplerConfig(steps=2), gen())


# --- DiT-XL/2's own sampler: 3-channel guidance, respaced timesteps, learned variance -----------

def _dit_sampling():
    from methods.diffusion.backbone import BACKBONES

    return BACKBONES.get("dit-xl-2-256").sampling


def test_guidance_on_three_channels_is_dits_forward_with_cfg():
    from methods.diffusion.samplers import guide

    out = torch.randn(4, 8, 2, 2, generator=gen(3))  # 2 conditional rows, then 2 unconditional; 4 eps + 4 var
    cond, uncond = out[:2], out[2:]
    # DiT's models.py: eps, rest = out[:, :3], out[:, 3:]; half = u + s (c - u); cat([half, rest]) (cond rows)
    expected = torch.cat([uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]), cond[:, 3:]], dim=1)
    guided = ClassGuided(None, None, 0, 4.0, guided_channels=3, keep_variance=True).combine(out, 2, 4)
    assert torch.equal(guided, expected)
    assert torch.equal(guide(cond[:, :4], uncond[:, :4], 4.0), uncond[:, :4] + 4.0 * (cond[:, :4] - uncond[:, :4]))
    plain = ClassGuided(None, None, 0, 4.0).combine(out, 2, 4)  # a backbone without either: eps of 4 channels
    assert torch.allclose(plain, uncond[:, :4] + 4.0 * (cond[:, :4] - uncond[:, :4]))


def _dit_respaced(steps: int) -> list[int]:
    # DiT's respace.py: space_timesteps(1000, str(steps)) with one section
    stride, cur, taken = (1000 - 1) / (steps - 1), 0.0, []
    for _ in range(steps):
        taken.append(round(cur))
        cur += stride
    return sorted(set(taken))


def test_the_dit_schedule_is_respaced_evenly_as_dits():
    from methods.diffusion.pretrained import DIT_SCHEDULE

    for steps in (50, 25, 7):
        scheduler = make_scheduler(DIT_SCHEDULE, SamplerConfig("ddpm", steps=steps), sampling=_dit_sampling())
        assert sorted(int(t) for t in scheduler.timesteps) == _dit_respaced(steps)
        assert scheduler.config.variance_type == "learned_range"
    assert make_scheduler(DIT_SCHEDULE, SamplerConfig("ddim", steps=5), sampling=_dit_sampling()).config.get(
        "variance_type", "fixed_small") != "learned_range"  # DDIM keeps its own (eta) noise


def test_the_learned_variance_is_dits_learned_range_on_the_respaced_schedule():
    import math

    from methods.diffusion.pretrained import DIT_SCHEDULE
    from methods.diffusion.samplers import learned_log_variance

    scheduler = make_scheduler(DIT_SCHEDULE, SamplerConfig("ddpm", steps=50), sampling=_dit_sampling())
    # DiT's gaussian_diffusion.py on the respaced betas, by hand
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    cumprod, acc = [], 1.0
    for b in betas:
        acc *= 1 - b
        cumprod.append(acc)
    used = _dit_respaced(50)
    new_betas, last = [], 1.0
    for t in used:
        new_betas.append(1 - cumprod[t] / last)
        last = cumprod[t]
    values = torch.tensor([-1.0, -0.3, 0.0, 0.6, 1.0])
    for i in (1, 10, 25, 49):
        a, a_prev = cumprod[used[i]], cumprod[used[i - 1]]
        posterior = new_betas[i] * (1 - a_prev) / (1 - a)
        frac = (values + 1) / 2
        expected = frac * math.log(new_betas[i]) + (1 - frac) * math.log(posterior)
        got = learned_log_variance(scheduler, used[i], values)
        assert torch.allclose(got, expected, rtol=1e-4), i


def test_the_sampler_draws_its_noise_with_the_learned_variance(backbone):
    from methods.diffusion.pretrained import DIT_SCHEDULE
    from methods.diffusion.samplers import learned_log_variance

    shape, sigmas = (2, *backbone.latent_shape), []

    def predictor(value: float):
        return lambda x, t: torch.cat([torch.zeros_like(x), torch.full_like(x, value)], dim=1)

    def record(state):
        sigmas.append((state.t, state.sigma))
        return None

    cfg = SamplerConfig("ddpm", steps=4, guidance=1.0)
    run = dict(device=torch.device("cpu"), sampling=_dit_sampling())
    sample(predictor(0.5), shape, DIT_SCHEDULE, cfg, gen(2), callback=record, **run)
    scheduler = make_scheduler(DIT_SCHEDULE, cfg, sampling=_dit_sampling())
    for t, sigma in sigmas:
        assert torch.allclose(sigma, torch.exp(0.5 * learned_log_variance(scheduler, t, torch.full(shape, 0.5))))
    low = sample(predictor(-1.0), shape, DIT_SCHEDULE, cfg, gen(2), **run)
    high = sample(predictor(1.0), shape, DIT_SCHEDULE, cfg, gen(2), **run)
    assert high.std() > low.std()  # the variance values set the noise each step adds
    plain = sample(lambda x, t: torch.zeros_like(x), shape, DIT_SCHEDULE, cfg, gen(2), device=torch.device("cpu"))
    assert not torch.allclose(plain, high)
