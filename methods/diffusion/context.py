"""The shared diffusion context: the one hook that turns real images into latents
(`encode_real`), its inverse (`decode`), and the conditioning inputs of both denoisers.

Every diffusion method reaches real-image latents only through ``encode_real``, so a plug-in
(EVLF) changes what all of them see by overriding that one method, in a subclass or on an
instance, and nothing else.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from core.datasets.imagenet import CLASS_SPACE, imagenet_index
from core.errors import BenchError
from methods.diffusion.backbone import Backbone

# Pixels one VAE call takes at most (batch x resolution^2): 256 images at 32 px, 16 at 128 px,
# 4 at 256 px, 1 at 512 px. The VAE's activations grow with the pixels, so a fixed batch that
# suits 32 px would take tens of GB at paper scale.
VAE_PIXELS_PER_CALL = 256 * 32 * 32


class DiffusionContext:
    """A backbone bound to one data set's image format (channels, native size, prompts)."""

    def __init__(self, backbone: Backbone, *, channels: int, image_size: int, prompts: Sequence[str] = (),
                 class_ids: Sequence[int] | None = None, batch_size: int = 256):
        vae_channels = backbone.image_channels
        if channels != vae_channels and not (channels == 1 and vae_channels == 3):
            raise BenchError(f"backbone '{backbone.name}' takes {vae_channels}-channel images, "
                             f"not {channels}-channel ones (grey images may feed an RGB VAE, nothing else)")
        self.backbone = backbone
        self.channels = channels
        self.image_size = image_size
        self.prompts = tuple(prompts)
        # Data set class index -> the class denoiser's label (identity for the small family).
        self.class_ids = None if class_ids is None else torch.as_tensor(list(class_ids), dtype=torch.long)
        self.batch_size = batch_size  # images per denoiser call

    @property
    def vae_batch(self) -> int:
        """Images per VAE call: ``batch_size``, lowered at high resolution (see VAE_PIXELS_PER_CALL)."""
        return max(1, min(self.batch_size, VAE_PIXELS_PER_CALL // self.backbone.resolution ** 2))

    @classmethod
    def for_dataset(cls, backbone: Backbone, data, **kwargs) -> DiffusionContext:
        """The context for a `Dataset`: its channels, image size and class prompts, and, for a
        class denoiser trained on ImageNet-1k, the ImageNet index of each class's wnid."""
        if backbone.class_denoiser is not None and backbone.class_space is not None:
            kwargs.setdefault("class_ids", class_ids_for(backbone.name, backbone.class_space, data))
        return cls(backbone, channels=data.channels, image_size=data.image_size, prompts=data.prompts, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def latent_scale(self) -> float:
        return self.backbone.latent_scale

    def _pads(self) -> tuple[int, int] | None:
        """(before, after) padding per side when images are padded into the VAE's frame."""
        res, size = self.backbone.resolution, self.image_size
        if self.backbone.fit != "pad-or-resize" or size > res:
            return None
        return (res - size) // 2, res - size - (res - size) // 2

    def to_vae_input(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images at native size -> the VAE's [-1, 1] input at its resolution and channels."""
        if images.dim() != 4 or images.shape[1] != self.channels or images.shape[-1] != self.image_size:
            raise ValueError(f"expected N x {self.channels} x {self.image_size} x {self.image_size} images, "
                             f"got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32) * 2 - 1
        if x.shape[1] != self.backbone.image_channels:
            x = x.expand(-1, self.backbone.image_channels, -1, -1)  # grey to RGB
        pads = self._pads()
        if pads is not None:
            # Pad with the value of black (-1), the background of the data sets that need padding.
            x = F.pad(x, (pads[0], pads[1], pads[0], pads[1]), value=-1.0)
        elif x.shape[-1] != self.backbone.resolution:
            x = F.interpolate(x, size=self.backbone.resolution, mode="bilinear", align_corners=False,
                              antialias=True)
        return x

    def from_vae_output(self, x: torch.Tensor) -> torch.Tensor:
        """The VAE's [-1, 1] output -> [0, 1] images at native size and channels."""
        pads = self._pads()
        if pads is not None:
            end = x.shape[-1] - pads[1]
            x = x[..., pads[0]:end, pads[0]:end]
        elif x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] != self.channels:
            x = x.mean(dim=1, keepdim=True)  # RGB back to grey
        return ((x + 1) / 2).clamp_(0, 1)

    # Names what ``encode_real`` returns; it enters the cache key of anything trained on hook
    # latents (a fine-tuned denoiser), so a plug-in's latents never reuse a plain model.
    hook_id: str = "vae-mean"

    @torch.no_grad()
    def vae_latents(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Unscaled VAE latents of real images (N x C x H x W in [0, 1], native size): the
        posterior mean, or a posterior sample when ``generator`` is given (minus any shift)."""
        vae = self.backbone.vae
        shift = float(vae.config.get("shift_factor") or 0.0)
        out = []
        for chunk in images.split(self.vae_batch):
            posterior = vae.encode(self.to_vae_input(chunk)).latent_dist
            z = posterior.mean
            if generator is not None:
                z = z + posterior.std * torch.randn(z.shape, generator=generator).to(z.device)
            out.append(z - shift)
        return torch.cat(out) if out else images.new_zeros((0, *self.backbone.latent_shape))

    def encode_real(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The hook: scaled latents ``s * E(x).mean`` of real images (N x C x H x W in [0, 1]).

        ``labels`` is unused here; plug-ins that fuse the class prompt into the latent read it.
        """
        return self.vae_latents(images) * self.latent_scale

    def replace_hook(self, encode: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                     hook_id: str) -> DiffusionContext:
        """A copy of this context whose ``encode_real`` is ``encode`` (how plug-ins wrap it)."""
        twin = copy.copy(self)
        twin.encode_real = encode  # type: ignore[method-assign]  # the instance attribute shadows the method
        twin.hook_id = f"{self.hook_id}+{hook_id}"
        return twin

    def with_denoiser(self, kind: str, model: torch.nn.Module) -> DiffusionContext:
        """A copy of this context (hook included) whose backbone samples with another denoiser."""
        twin = copy.copy(self)
        twin.backbone = dataclasses.replace(self.backbone, **{f"{kind}_denoiser": model})
        return twin

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at the data set's native size and channels from scaled latents."""
        vae, scale = self.backbone.vae, self.latent_scale
        shift = float(vae.config.get("shift_factor") or 0.0)
        out = [self.from_vae_output(vae.decode(z.to(self.device) / scale + shift).sample)
               for z in latents.split(self.vae_batch)]
        if not out:
            return latents.new_zeros((0, self.channels, self.image_size, self.image_size))
        return torch.cat(out)

    def class_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Data set labels -> the class denoiser's labels."""
        labels = torch.as_tensor(labels, dtype=torch.long)
        if self.class_ids is not None:
            labels = self.class_ids[labels]
        return labels.to(self.device)

    def class_prompts(self, labels: torch.Tensor) -> list[str]:
        if not self.prompts:
            raise ValueError("this context has no class prompts")
        return [self.prompts[int(y)] for y in labels]

    def text_embeds(self, prompts: Sequence[str]) -> torch.Tensor:
        """The text encoder's token embeddings of ``prompts`` (N x L x D) on the device."""
        self.backbone.denoiser("text")  # a clear error if this backbone cannot condition on text
        return self.backbone.text_encoder.encode(list(prompts)).to(self.device)


def class_ids_for(backbone: str, class_space: str, data) -> list[int]:
    """The label a class denoiser of ``class_space`` takes for each class of ``data``; refuses
    data whose classes it was never trained on."""
    if class_space != CLASS_SPACE:
        raise BenchError(f"backbone '{backbone}': unknown class space '{class_space}'")
    if data.wnids is None:
        raise BenchError(f"backbone '{backbone}' samples ImageNet-1k classes, and the classes of {data.name} are not "
                         "ImageNet wnids; use an ImageNet subset (imagewoof, imagenette, imageidc, an imagefolder of "
                         "wnid folders) or a backbone trained on this data set ('small')")
    return [imagenet_index(wnid) for wnid in data.wnids]
