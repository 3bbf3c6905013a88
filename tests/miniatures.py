"""Miniatures of the pretrained checkpoints: the exact diffusers and transformers classes and
directory layouts of Stable Diffusion v1.5, DiT-XL/2-256 and sd-vae-ft-mse, with tiny widths
and random weights, written with ``save_pretrained`` so the real loaders read them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def tiny_vae(channels: int = 3, block_out_channels: tuple[int, ...] = (8, 16)) -> AutoencoderKL:
    """An AutoencoderKL of tiny widths; four blocks down-sample by 8 as SD's VAE does, two by 2."""
    blocks = len(block_out_channels)
    return AutoencoderKL(in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, block_out_channels=block_out_channels,
                         latent_channels=4, norm_num_groups=8, sample_size=16)


def write_tokenizer(directory) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single letters (no merges): enough to tokenise class prompts."""
    directory.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[f"{ch}</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                              pad_token="<|endoftext|>", model_max_length=16)
    for name in ("vocab.json", "merges.txt"):
        (directory / name).unlink()
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def write_sd15(root: Path) -> Path:
    """A Stable Diffusion v1.5 layout under ``root``: vae/, unet/, text_encoder/, tokenizer/, scheduler/."""
    torch.manual_seed(0)
    tiny_vae().save_pretrained(root / "vae")
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                         cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    tokenizer = write_tokenizer(root / "tokenizer")
    CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(root / "text_encoder")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True,
                  steps_offset=1).save_pretrained(root / "scheduler")
    return root


def write_dit(root: Path, sample_size: int = 8, vae_blocks: tuple[int, ...] = (8, 16)) -> tuple[Path, Path]:
    """A DiT-XL/2 layout (transformer/, scheduler/) and a separate sd-vae-ft-mse-like AutoencoderKL
    directory; ``sample_size`` is the latent side and ``vae_blocks`` the VAE's widths (its resolution
    is ``sample_size`` times its down-sampling factor: 16 px by default, 256 px with 32 and four blocks)."""
    torch.manual_seed(1)
    # out_channels = 2 x latent channels: noise and variance, as DiT-XL/2 predicts them.
    DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=1,
                          sample_size=sample_size, patch_size=2,
                          num_embeds_ada_norm=1000).save_pretrained(root / "dit" / "transformer")
    DDIMScheduler(clip_sample=False).save_pretrained(root / "dit" / "scheduler")
    tiny_vae(block_out_channels=vae_blocks).save_pretrained(root / "vae")
    return root / "dit", root / "vae"
