"""Shared diffusion machinery for the generative methods: backbones (`backbone.py`, `small.py`,
`pretrained.py`), the encode/decode context (`context.py`), the samplers (`samplers.py`) and the
text encoder wrapper (`text.py`).

Importing this package is cheap; diffusers is imported by the modules that need it.
"""
from methods.diffusion.backbone import BACKBONES, Backbone, DenoiserKind, get_backbone, require_denoiser
from methods.diffusion.context import DiffusionContext

__all__ = ["BACKBONES", "Backbone", "DenoiserKind", "DiffusionContext", "get_backbone", "require_denoiser"]
