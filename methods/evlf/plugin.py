"""The ``+evlf`` plug-in: base method ``X`` reads fused latents ``s * F(E(x).mean, T(p_y))``
through its ``encode_real`` hook instead of plain ones; everything else in ``X`` is unchanged.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from core.search_space import Range
from core.stages import SharedStage
from methods.diffusion.backbone import ProgressFn
from methods.evlf.diagnostics import as_rows
from methods.evlf.training import ARTIFACT_KIND, EVLFOptions, TrainedFusion, fusion_key, get_fusion, load_fusion
from methods.plugins import Diagnostics, Plugin, register_plugin

if TYPE_CHECKING:
    from core.datasets.base import Dataset
    from methods.base import DistillContext
    from methods.diffusion.context import DiffusionContext


def _reporter(ctx: DistillContext, parts: int = 10) -> ProgressFn:
    """A progress callback that turns each tenth of a phase into one status line."""
    reported: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        part = done * parts // max(total, 1)
        if part > reported.get(phase, 0):
            reported[phase] = part
            ctx.report(f"{phase}: step {done}/{total}")

    return progress


@register_plugin("evlf")
class EVLF(Plugin):
    """Early vision-language fusion (CVPR 2026) as a replacement of the ``encode_real`` hook."""

    Options = EVLFOptions
    needs_text_encoder = True
    tunable = {"lambda1": Range(0.01, 1.0, log=True)}

    def trained(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> TrainedFusion:
        """The fusion module for this backbone and data: cached, or trained now."""
        return get_fusion(dctx, data, self.options, ctx.cache, _reporter(ctx))

    def prepare(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> None:
        trained = self.trained(dctx, data, ctx)
        verb = "loaded" if trained.cached else "trained"
        summary = trained.diagnostics.summary()
        ctx.report(f"EVLF fusion {verb} ({trained.key}): held-out class retrieval "
                   f"{summary['retrieval_fused']:.3f} fused vs {summary['retrieval_raw']:.3f} raw, "
                   f"relative MSE {summary['relative_mse']:.4f}")

    def shared_stage(self, dctx: DiffusionContext | None, data: Dataset) -> SharedStage:
        return SharedStage(f"{self.name} module", data.name, ARTIFACT_KIND,
                           None if dctx is None else fusion_key(dctx, data, self.options))

    def wrap(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> DiffusionContext:
        trained = self.trained(dctx, data, ctx)
        return dctx.replace_hook(functools.partial(trained.encode, dctx), hook_id=f"evlf:{trained.key}")

    def diagnostics(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> Diagnostics | None:
        """The stored diagnostics of the cached module, or None if it was never trained."""
        trained = load_fusion(dctx, data, self.options, ctx.cache)
        return None if trained is None else as_rows(trained.diagnostics)
