"""The samplers every diffusion method shares: DDPM and DDIM through diffusers schedulers,
classifier-free guidance for class labels and for text, img2img from given latents, and a
per-step callback that may move the step's mean (mode guidance).

Whole batches go through the denoiser at once; the conditional and unconditional halves of
classifier-free guidance share one forward pass. All noise is drawn from the caller's
``torch.Generator`` on the CPU, so a seed gives the same samples on every device.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from core.errors import BenchError
from methods.diffusion.backbone import BackboneSampling
from methods.diffusion.context import DiffusionContext

# sampler name -> diffusers scheduler class (imported when a sampler is built: listing methods stays cheap)
SCHEDULERS = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler"}
PLAIN = BackboneSampling()


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: scheduler kind, number of steps, guidance scale, DDIM's eta."""

    kind: str = "ddim"
    steps: int = 50
    guidance: float = 4.0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise BenchError(f"unknown sampler '{self.kind}' (valid: {', '.join(sorted(SCHEDULERS))})")
        if self.steps < 1:
            raise BenchError(f"sampling needs at least 1 step, got {self.steps}")
        if self.guidance < 0 or self.eta < 0:
            raise BenchError("guidance and eta must not be negative")


@dataclass
class StepState:
    """What a step callback sees.

    ``index`` counts steps of the full schedule (0 .. ``total`` - 1; img2img starts later),
    ``latents`` is x_t, ``x0_hat`` the predicted clean latents, ``mean`` the step's mean of
    x_{t-1} before noise, ``sigma`` the standard deviation of the noise the step adds.
    """

    index: int
    total: int
    t: int
    latents: torch.Tensor
    x0_hat: torch.Tensor
    mean: torch.Tensor
    sigma: float | torch.Tensor  # per element where the denoiser learns its variance


# Returns a replacement for ``state.mean``, or None to keep it.
StepCallback = Callable[[StepState], "torch.Tensor | None"]
# (latents x_t, timestep t) -> guided noise prediction.
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def uses_learned_variance(sampling: BackboneSampling, config: SamplerConfig) -> bool:
    """Whether the denoiser's learned variance sets the noise of each step (DDPM only; DDIM has its own)."""
    return sampling.learned_variance and config.kind == "ddpm"


def make_scheduler(scheduler_config: dict, config: SamplerConfig, device: torch.device | None = None,
                   sampling: BackboneSampling = PLAIN):
    """A fresh DDPM or DDIM scheduler from a backbone's config, with ``config.steps`` timesteps
    spaced and with the variance its backbone's reference sampler uses."""
    import diffusers

    overrides: dict = {}
    if sampling.timestep_spacing:
        overrides["timestep_spacing"] = sampling.timestep_spacing
    if uses_learned_variance(sampling, config):
        overrides["variance_type"] = "learned_range"
    scheduler = getattr(diffusers, SCHEDULERS[config.kind]).from_config(scheduler_config, **overrides)
    scheduler.set_timesteps(config.steps, device=device)
    return scheduler


def guide(cond: torch.Tensor, uncond: torch.Tensor, guidance: float, channels: int | None = None) -> torch.Tensor:
    """Classifier-free guidance ``uncond + w (cond - uncond)`` on the first ``channels`` channels (all
    when None); the other channels keep the conditional prediction, as DiT's ``forward_with_cfg``."""
    if channels is None:
        return uncond + guidance * (cond - uncond)
    guided = uncond[:, :channels] + guidance * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([guided, cond[:, channels:]], dim=1)


class Guided:
    """Classifier-free guidance around a denoiser's output: what the sampler receives is the guided
    noise prediction, followed by the conditional learned variance when ``keep_variance``."""

    guidance: float
    guided_channels: int | None
    keep_variance: bool

    def combine(self, out: torch.Tensor, n: int, channels: int) -> torch.Tensor:
        """``out`` holds the conditional rows, then (unless guidance is 1) the unconditional ones."""
        width = 2 * channels if self.keep_variance and out.shape[1] == 2 * channels else channels
        if out.shape[0] == n:  # guidance 1: the conditional prediction exactly
            return out[:, :width]
        guided = guide(out[:n, :channels], out[n:, :channels], self.guidance, self.guided_channels)
        # the variance is the conditional one, never extrapolated
        return torch.cat([guided, out[:n, channels:width]], dim=1) if width > channels else guided


@dataclass
class ClassGuided(Guided):
    """Classifier-free guidance for a class-conditional DiT: labels vs the null label."""

    model: nn.Module
    labels: torch.Tensor
    null_label: int
    guidance: float
    guided_channels: int | None = None
    keep_variance: bool = False

    def __call__(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n, c = latents.shape[0], latents.shape[1]
        if self.guidance == 1.0:  # the conditional prediction exactly, at half the cost
            out = self.model(latents, timestep=t.expand(n), class_labels=self.labels, return_dict=False)[0]
            return self.combine(out, n, c)
        labels = torch.cat([self.labels, torch.full_like(self.labels, self.null_label)])
        x = torch.cat([latents, latents])
        return self.combine(self.model(x, timestep=t.expand(2 * n), class_labels=labels, return_dict=False)[0], n, c)


@dataclass
class TextGuided(Guided):
    """Classifier-free guidance for a text-conditional UNet: prompt vs negative (or empty) prompt."""

    model: nn.Module
    cond: torch.Tensor
    uncond: torch.Tensor
    guidance: float
    guided_channels: int | None = None
    keep_variance: bool = False

    def __call__(self, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n, c = latents.shape[0], latents.shape[1]
        if self.guidance == 1.0:
            out = self.model(latents, t.expand(n), encoder_hidden_states=self.cond, return_dict=False)[0]
            return self.combine(out, n, c)
        x = torch.cat([latents, latents])
        text = torch.cat([self.cond, self.uncond.expand_as(self.cond)])
        return self.combine(self.model(x, t.expand(2 * n), encoder_hidden_states=text, return_dict=False)[0], n, c)


def _clone(generator: torch.Generator) -> torch.Generator:
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return twin


def learned_log_variance(scheduler, t: int, values: torch.Tensor) -> torch.Tensor:
    """The log variance a step adds with DiT's learned range: ``values`` in [-1, 1] interpolate
    between the posterior variance (clipped away from 0) and beta_t of the spaced schedule."""
    prev = int(scheduler.previous_timestep(t))
    a_t = float(scheduler.alphas_cumprod[t])
    a_prev = float(scheduler.alphas_cumprod[prev]) if prev >= 0 else 1.0
    beta = 1 - a_t / a_prev
    posterior = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
    frac = (values + 1) / 2
    return frac * math.log(beta) + (1 - frac) * math.log(posterior)


def _sigma(scheduler, t: int, config: SamplerConfig) -> float:
    """Standard deviation of the noise a step adds: eta * sqrt(posterior variance); eta = 1 for DDPM."""
    if config.kind == "ddpm":
        prev, eta, last = int(scheduler.previous_timestep(t)), 1.0, 1.0
    else:
        prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        eta, last = config.eta, float(scheduler.final_alpha_cumprod)
    a_t = float(scheduler.alphas_cumprod[t])
    a_prev = float(scheduler.alphas_cumprod[prev]) if prev >= 0 else last
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    return eta * math.sqrt(max(variance, 1e-20 if config.kind == "ddpm" else 0.0))


def start_index(steps: int, strength: float) -> int:
    """img2img: the schedule index it starts at, ``steps - int(steps * strength)`` (diffusers' rule)."""
    if not 0.0 < strength <= 1.0:
        raise BenchError(f"img2img strength must be in (0, 1], got {strength}")
    run = min(int(steps * strength), steps)
    if run == 0:
        raise BenchError(f"strength {strength} with {steps} steps runs no step; raise one of them")
    return steps - run


@torch.no_grad()
def sample(predict: NoisePredictor, shape: Sequence[int], scheduler_config: dict, config: SamplerConfig,
           generator: torch.Generator, *, device: torch.device, init_latents: torch.Tensor | None = None,
           strength: float = 1.0, callback: StepCallback | None = None,
           sampling: BackboneSampling = PLAIN) -> torch.Tensor:
    """Run the reverse process for a batch of ``shape`` latents and return x_0.

    From pure noise when ``init_latents`` is None; otherwise img2img: the latents are noised to
    the level of schedule index ``steps - int(steps * strength)`` (with noise drawn first from
    ``generator``) and only the remaining steps run. With a learned variance (``sampling``),
    ``predict`` returns the noise prediction followed by the variance values.
    """
    scheduler = make_scheduler(scheduler_config, config, device, sampling)
    channels = shape[1]
    timesteps = scheduler.timesteps
    shape = tuple(shape)
    noise = torch.randn(shape, generator=generator).to(device)
    if init_latents is None:
        first = 0
        latents = noise * scheduler.init_noise_sigma
    else:
        if tuple(init_latents.shape) != shape:
            raise ValueError(f"init_latents have shape {tuple(init_latents.shape)}, expected {shape}")
        first = start_index(config.steps, strength)
        latents = scheduler.add_noise(init_latents.to(device, torch.float32), noise, timesteps[first:first + 1])
    step_kwargs = {"eta": config.eta} if config.kind == "ddim" else {}
    for index in range(first, len(timesteps)):
        t = timesteps[index]
        eps = predict(scheduler.scale_model_input(latents, t), t)
        if callback is None:
            latents = scheduler.step(eps, t, latents, generator=generator, **step_kwargs).prev_sample
            continue
        # The step is mean + sigma * noise; the same step on zero inputs (the learned variance
        # kept) with a twin of the generator yields exactly the noise term, which separates the
        # mean for the callback.
        zero = eps.clone()
        zero[:, :channels] = 0
        noise_term = scheduler.step(zero, t, torch.zeros_like(latents), generator=_clone(generator),
                                    **step_kwargs).prev_sample
        out = scheduler.step(eps, t, latents, generator=generator, **step_kwargs)
        mean = out.prev_sample - noise_term
        if eps.shape[1] == 2 * channels and uses_learned_variance(sampling, config):
            sigma: float | torch.Tensor = torch.exp(0.5 * learned_log_variance(scheduler, int(t), eps[:, channels:]))
        else:
            sigma = _sigma(scheduler, int(t), config)
        state = StepState(index, len(timesteps), int(t), latents, out.pred_original_sample, mean, sigma)
        new_mean = callback(state)
        latents = (mean if new_mean is None else new_mean) + noise_term
    return latents


def _chunks(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]


def sample_class(ctx: DiffusionContext, labels: torch.Tensor, config: SamplerConfig, generator: torch.Generator,
                 *, init_latents: torch.Tensor | None = None, strength: float = 1.0,
                 callback: StepCallback | None = None, batch_size: int | None = None) -> torch.Tensor:
    """Latents from the class-conditional denoiser for data set ``labels`` (with CFG), batched."""
    model = ctx.backbone.denoiser("class")
    ids = ctx.class_labels(labels)
    if len(ids) and (int(ids.max()) >= ctx.backbone.null_class or int(ids.min()) < 0):
        raise BenchError(f"class labels must be in 0..{ctx.backbone.null_class - 1} for backbone "
                         f"'{ctx.backbone.name}'")
    sampling = ctx.backbone.sampling
    out = []
    for part in _chunks(len(ids), batch_size or ctx.batch_size):
        predict = ClassGuided(model, ids[part], ctx.backbone.null_class, config.guidance, sampling.guided_channels,
                              uses_learned_variance(sampling, config))
        init = None if init_latents is None else init_latents[part]
        out.append(sample(predict, (len(ids[part]), *ctx.backbone.latent_shape), ctx.backbone.scheduler_config,
                          config, generator, device=ctx.device, init_latents=init, strength=strength,
                          callback=callback, sampling=sampling))
    return torch.cat(out) if out else torch.zeros((0, *ctx.backbone.latent_shape))


def sample_text(ctx: DiffusionContext, prompts: Sequence[str], config: SamplerConfig, generator: torch.Generator,
                *, negative_prompt: str = "", init_latents: torch.Tensor | None = None, strength: float = 1.0,
                callback: StepCallback | None = None, batch_size: int | None = None) -> torch.Tensor:
    """Latents from the text-conditional denoiser for ``prompts`` (CFG against ``negative_prompt``)."""
    model = ctx.backbone.denoiser("text")
    prompts = list(prompts)
    uncond = ctx.text_embeds([negative_prompt])
    sampling = ctx.backbone.sampling
    out = []
    for part in _chunks(len(prompts), batch_size or ctx.batch_size):
        predict = TextGuided(model, ctx.text_embeds(prompts[part]), uncond, config.guidance, sampling.guided_channels,
                             uses_learned_variance(sampling, config))
        init = None if init_latents is None else init_latents[part]
        out.append(sample(predict, (len(prompts[part]), *ctx.backbone.latent_shape), ctx.backbone.scheduler_config,
                          config, generator, device=ctx.device, init_latents=init, strength=strength,
                          callback=callback, sampling=sampling))
    return torch.cat(out) if out else torch.zeros((0, *ctx.backbone.latent_shape))


def img2img(ctx: DiffusionContext, latents: torch.Tensor, labels: torch.Tensor, strength: float,
            config: SamplerConfig, generator: torch.Generator, *, denoiser: str = "text",
            negative_prompt: str = "", callback: StepCallback | None = None) -> torch.Tensor:
    """Noise ``latents`` to strength ``strength`` and denoise towards each label's class (prompt or label)."""
    if denoiser == "text":
        return sample_text(ctx, ctx.class_prompts(labels), config, generator, negative_prompt=negative_prompt,
                           init_latents=latents, strength=strength, callback=callback)
    return sample_class(ctx, labels, config, generator, init_latents=latents, strength=strength, callback=callback)
