"""The EVLF fusion module ``F(z, text_tokens) -> z'`` and the throw-away projector ``P`` that
its contrastive loss reads.

``F`` lifts the latent to tokens, lets them attend to a fixed key/value set made of the image
tokens and the projected text tokens (built once and shared by every layer), and maps the
updated query stream back to a latent of the same shape. Nothing ties ``z'`` to ``z`` but the
MSE term of the training loss: no global residual, no gate, no zero-initialised output.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class FusionConfig:
    """Everything needed to rebuild a `FusionModule` (it is stored beside the weights)."""

    latent_channels: int
    text_dim: int
    tokens: int  # H * W of the latent: the position embedding is tied to one latent size
    width: int = 256
    layers: int = 2
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECOMPUTE_ABOVE_BYTES = 2**28  # one layer's attention map above 256 MB: recompute it in the backward pass


class FusionLayer(nn.Module):
    """One post-norm block: cross-attention of the queries to the shared keys/values, then FFN."""

    def __init__(self, width: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, kv: torch.Tensor, kv_padding: torch.Tensor | None) -> torch.Tensor:
        attended, _ = self.attn(x, kv, kv, key_padding_mask=kv_padding, need_weights=False)
        x = self.norm1(x + attended)
        return self.norm2(x + self.ffn(x))


class FusionModule(nn.Module):
    """Early vision-language fusion of a clean latent with its class prompt's text tokens."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        if config.width % config.heads:
            raise ValueError(f"width {config.width} is not divisible by {config.heads} heads")
        self.config = config
        c, w = config.latent_channels, config.width
        self.latent_in = nn.Conv2d(c, w, kernel_size=1)
        # Standard-normal init as in the authors' code (not the 0.02 of ViTs).
        self.pos_embed = nn.Parameter(torch.randn(1, config.tokens, w))
        self.text_in = nn.Linear(config.text_dim, w)
        self.layers = nn.ModuleList(FusionLayer(w, config.heads, config.ffn, config.dropout)
                                    for _ in range(config.layers))
        self.latent_out = nn.Conv2d(w, c, kernel_size=1)

    def keys_values(self, z: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens, shared keys/values): [image tokens, projected text tokens]."""
        h, w = z.shape[-2:]
        if h * w != self.config.tokens:
            raise ValueError(f"this fusion module was built for {self.config.tokens} latent cells, "
                             f"got a {h}x{w} latent (the position embedding is tied to one resolution)")
        x = self.latent_in(z).flatten(2).transpose(1, 2) + self.pos_embed
        return x, torch.cat([x, self.text_in(text)], dim=1)

    def forward(self, z: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``z``: B x C x H x W latents; ``text``: B x L x D token states; ``text_mask``: B x L,
        True (or 1) for real tokens, as the tokenizer's attention mask. Without a mask, padding
        tokens are attended to like the released code does."""
        b, _, h, w = z.shape
        x, kv = self.keys_values(z, text)
        kv_padding = None
        if text_mask is not None:
            image_keep = torch.zeros(b, h * w, dtype=torch.bool, device=z.device)
            kv_padding = torch.cat([image_keep, ~text_mask.to(z.device, torch.bool)], dim=1)
        # Large attention maps (1,024 latent cells at 256 px: 0.6 GB per layer at batch 32, kept
        # for the backward pass because attention dropout rules out fused kernels) are recomputed
        # in the backward pass instead, with the same dropout draws: the same gradients, bit for bit.
        recompute = (self.training and torch.is_grad_enabled()
                     and b * self.config.heads * x.shape[1] * kv.shape[1] * x.element_size() > RECOMPUTE_ABOVE_BYTES)
        for layer in self.layers:
            if recompute:
                x = checkpoint(layer, x, kv, kv_padding, use_reentrant=False)
            else:
                x = layer(x, kv, kv_padding)
        return self.latent_out(x.transpose(1, 2).reshape(b, self.config.width, h, w))


def projector_stride(side: int, pool: int = 4, max_stride: int = 4) -> int:
    """The largest stride up to ``max_stride`` that keeps the map at least ``pool`` cells wide
    (4 on the 32- and 64-cell latents of Stable Diffusion, as in the paper; 2 on 8x8)."""
    return max(1, min(max_stride, side // pool))


class Projector(nn.Module):
    """``P``: latent -> one vector in the text encoder's width, only for the InfoNCE term."""

    def __init__(self, latent_channels: int, text_dim: int, side: int, mid: int = 64, pool: int = 4):
        super().__init__()
        stride = projector_stride(side, pool)
        self.down = nn.Conv2d(latent_channels, mid, kernel_size=stride, stride=stride)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.out = nn.Sequential(nn.Linear(mid * pool * pool, text_dim), nn.LayerNorm(text_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.down(z)).flatten(1))
