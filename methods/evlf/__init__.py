"""EVLF, early vision-language fusion (CVPR 2026): a module that fuses the class prompt into
a real image's VAE latent before any diffusion method sees it, as the ``+evlf`` plug-in.

`fusion.py` holds the module and its throw-away projector, `losses.py` the training loss,
`training.py` the options, training loop, cache and trained-module record, `diagnostics.py`
what a trained module is judged by, and `plugin.py` the plug-in (importing it registers
``evlf``). Importing this package does not register the plug-in.
"""
from methods.evlf.diagnostics import FusionDiagnostics
from methods.evlf.fusion import FusionConfig, FusionModule, Projector
from methods.evlf.training import EVLFOptions, SMOKE_OPTIONS, TrainedFusion, get_fusion, load_fusion, train_fusion

__all__ = ["EVLFOptions", "FusionConfig", "FusionDiagnostics", "FusionModule", "Projector", "SMOKE_OPTIONS",
           "TrainedFusion", "get_fusion", "load_fusion", "train_fusion"]
