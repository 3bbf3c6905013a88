"""Student architectures, registered by name and built for a data set's shape.

ConvNet-3 follows the DC/DSA/DM code: blocks of [3x3 conv, instance norm (group norm with
one group per channel, affine), ReLU, 2x2 average pool], then one linear classifier.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.registry import Registry


@dataclass(frozen=True)
class StudentShape:
    """What a student must adapt to."""

    channels: int
    image_size: int
    num_classes: int


StudentFactory = Callable[..., nn.Module]
ARCHS: Registry[StudentFactory] = Registry("arch", check=callable)
register_arch = ARCHS.register


class ConvNet(nn.Module):
    """The DC-lineage ConvNet with instance norm and average pooling."""

    def __init__(self, shape: StudentShape, width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = shape.channels, shape.image_size
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.GroupNorm(width, width, affine=True),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            channels, size = width, size // 2
        if size < 1:
            raise ValueError(f"image size {shape.image_size} is too small for ConvNet depth {depth}")
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, shape.num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (flattened), used by herding and later by quality metrics."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register_arch("convnet3")
def convnet3(shape: StudentShape, width: int = 128) -> nn.Module:
    return ConvNet(shape, width=width, depth=3)


@register_arch("convnet3-w32")
def convnet3_w32(shape: StudentShape, width: int = 32) -> nn.Module:
    return ConvNet(shape, width=width, depth=3)


def build_student(name: str, shape: StudentShape, width: int | None = None) -> nn.Module:
    """Build a registered student; ``width`` overrides the default width where a budget asks."""
    factory = ARCHS.get(name)
    return factory(shape) if width is None else factory(shape, width=width)
