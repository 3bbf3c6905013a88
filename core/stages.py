"""Shared stages: what several trials of a grid share and the driver builds once before them (a
backbone's autoencoder and denoisers, a plug-in's module, a fine-tuned denoiser, a teacher), as
`bench plan` counts them: by a name that stays the same from one cache key to the next (what the
calibration's measured seconds are keyed by) and the cache entry that holds it once built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class HasMeta(Protocol):
    def meta(self, kind: str, key: str) -> dict | None: ...


@dataclass(frozen=True)
class SharedStage:
    """One thing the driver builds before the trials, and where the cache keeps it."""

    name: str  # e.g. "small/small autoencoder", "teacher convnet3 width 32, 1500 steps"
    dataset: str
    kind: str  # the cache kind it is saved under
    key: str | None  # None: its key depends on a stage before it that is not built yet

    def cached(self, cache: HasMeta) -> bool:
        return self.key is not None and cache.meta(self.kind, self.key) is not None

    def identity(self) -> tuple:
        """What two methods that need the same thing have in common (built once for both)."""
        return (self.kind, self.key) if self.key is not None else (self.name, self.dataset)
