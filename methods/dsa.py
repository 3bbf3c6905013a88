"""`dsa`: dataset condensation with differentiable Siamese augmentation (Zhao & Bilen, ICML 2021;
the DC repository's `main.py --method DSA`): `dc`'s gradient matching with every real batch and
its synthetic counterpart augmented by one shared DSA draw (colour, crop, cutout, flip, scale,
rotate; no flip on digits, as the readme says), the network's inner loop augmented per image,
and the set started from real images (the readme's ``--init real``). Its paper evaluates under
the `dsa` protocol; budgets are `dc`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

from methods.dc import DCOptions, GradientMatching
from methods.registry import register_method


@dataclass(frozen=True)
class DSAOptions(DCOptions):
    init: str = "real"
    dsa: bool = True


@register_method("dsa")
class SiameseGradientMatching(GradientMatching):
    Options = DSAOptions
