"""What a trained fusion module is judged by, stored beside its weights: the curves of both loss
terms, how far fused latents move from the raw ones, and whether the projected latents point
at their own class prompt more often after fusion than before (class retrieval).

All figures are on held-out images: the validation split (modules trained before
`bench tune` existed measured the test split; the record names its split). They never feed
training, selection or a result; the test split stays for the students' final score only, and
is sealed while `bench tune` searches, where a module is trained per candidate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from methods.plugins import Diagnostic, Diagnostics


@dataclass
class LossCurve:
    """Both loss terms, the MSE weight and the total, recorded every few training steps."""

    step: list[int] = field(default_factory=list)
    info_nce: list[float] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    mse_weight: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    def record(self, step: int, info_nce: float, mse: float, mse_weight: float, total: float) -> None:
        self.step.append(step)
        self.info_nce.append(info_nce)
        self.mse.append(mse)
        self.mse_weight.append(mse_weight)
        self.total.append(total)

    def tail_mean(self, name: str, fraction: float = 0.1) -> float:
        """The mean of the last ``fraction`` of a curve (less noisy than its last point)."""
        values = getattr(self, name)
        if not values:
            return float("nan")
        n = max(1, int(len(values) * fraction))
        return float(sum(values[-n:]) / n)


@dataclass
class HeldOutFigures:
    """Fused against raw latents on held-out images (unscaled latents)."""

    images: int
    fused_mse: float  # mean over elements of (z' - z)^2
    relative_mse: float  # fused_mse / variance of the raw latents' elements
    retrieval_fused: float  # top-1 class retrieval of P(z') against the pooled prompts
    retrieval_raw: float  # the same for P(z), through the same projector
    chance: float  # 1 / number of classes
    split: str = "test"  # which held-out split: "val" now; records made before it was named used the test split


@dataclass
class FusionDiagnostics:
    """Everything measured while training one fusion module; JSON-able via `to_json`."""

    curve: LossCurve
    held_out: HeldOutFigures
    train_seconds: float
    steps: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> FusionDiagnostics:
        return cls(LossCurve(**record["curve"]), HeldOutFigures(**record["held_out"]),
                   float(record["train_seconds"]), int(record["steps"]))

    def summary(self) -> dict[str, Any]:
        """The headline figures (no curves), for reports and benchmark output."""
        return {"steps": self.steps, "train_seconds": round(self.train_seconds, 2),
                "final_info_nce": round(self.curve.tail_mean("info_nce"), 4),
                "final_mse": round(self.curve.tail_mean("mse"), 5),
                **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self.held_out).items()}}


def retrieval_accuracy(features: torch.Tensor, prompts: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows whose nearest prompt vector (cosine) is their own class's."""
    sims = F.normalize(features.float(), dim=-1) @ F.normalize(prompts.float(), dim=-1).t()
    return float((sims.argmax(dim=1).cpu() == labels.cpu()).float().mean())


@torch.no_grad()
def held_out_figures(raw: torch.Tensor, fused: torch.Tensor, projected_raw: torch.Tensor,
                     projected_fused: torch.Tensor, prompts: torch.Tensor, labels: torch.Tensor,
                     split: str) -> HeldOutFigures:
    """Figures from raw and fused latents (N x C x H x W), their projections (N x D) and the
    pooled prompt vectors (K x D)."""
    mse = float((fused.float() - raw.float()).pow(2).mean())
    variance = float(raw.float().var())
    return HeldOutFigures(
        images=int(raw.shape[0]), fused_mse=mse, relative_mse=mse / max(variance, 1e-12),
        retrieval_fused=retrieval_accuracy(projected_fused, prompts, labels),
        retrieval_raw=retrieval_accuracy(projected_raw, prompts, labels),
        chance=1.0 / prompts.shape[0], split=split)


def as_rows(diagnostics: FusionDiagnostics) -> Diagnostics:
    """The diagnostics as the plug-in interface reports them: figures, the loss curves, the record."""
    curve, held = diagnostics.curve, diagnostics.held_out
    rows = [
        Diagnostic("training steps", diagnostics.steps),
        Diagnostic("training time", round(diagnostics.train_seconds, 1), "s"),
        Diagnostic("InfoNCE, first → last", f"{curve.info_nce[0]:.3f} → {curve.info_nce[-1]:.3f}"),
        Diagnostic("MSE to input, first → last", f"{curve.mse[0]:.4f} → {curve.mse[-1]:.4f}"),
        Diagnostic(f"held-out images ({held.split} split)", held.images),
        Diagnostic("fused vs raw: mean squared distance", held.fused_mse),
        Diagnostic("fused vs raw: share of the raw variance", held.relative_mse),
        Diagnostic("class retrieval: fused", held.retrieval_fused),
        Diagnostic("class retrieval: raw", held.retrieval_raw),
        Diagnostic("class retrieval: chance", held.chance),
    ]
    curves = {"InfoNCE": curve.info_nce, "MSE to input": curve.mse, "MSE weight": curve.mse_weight}
    return Diagnostics(rows, list(curve.step), curves, diagnostics.to_json())
