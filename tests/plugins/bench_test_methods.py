"""Methods for the end-to-end tests, loaded through BENCH_METHOD_MODULES: one that always fails,
and one that reads the test split (which a tuning study must never let it do)."""
from dataclasses import dataclass

from core.distilled import DistilledSet
from core.search_space import Range
from methods.base import Distiller
from methods.random import random_indices
from methods.registry import register_method


@register_method("always-fails")
class AlwaysFails(Distiller):
    def distill(self, data, ipc, seed, ctx):
        raise RuntimeError("this method fails on purpose")


@dataclass(frozen=True)
class PeekOptions:
    blend: float = 0.5


@register_method("peeks-at-test")
class PeeksAtTest(Distiller):
    """Random real images blended with the mean test image: a method that cheats."""

    Options = PeekOptions
    tunable = {"blend": Range(0.0, 1.0)}

    def distill(self, data, ipc, seed, ctx):
        idx = random_indices(data.train.labels, data.num_classes, ipc, seed)
        mean_test = data.test.float_images().mean(0, keepdim=True)
        images = (1 - self.options.blend) * data.train.images[idx].float() / 255.0 + self.options.blend * mean_test
        return DistilledSet(images.clamp(0, 1), data.train.labels[idx].clone(), meta={})
