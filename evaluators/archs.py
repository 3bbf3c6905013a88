"""Student architectures, registered by name and built for a data set's shape.

ConvNet-3/6 follow the DC/DSA/DM and IDC code: blocks of [3x3 conv, instance norm (group
norm with one group per channel, affine), ReLU, 2x2 average pool], then a linear classifier.
ResNetAP-10 (IDC) down-samples by average pooling; ResNet-18 is timm's, with instance norm
and, for images of 64 px and less, a 3x3 stride-1 stem without max-pool. Every student has
``embed(x)`` (penultimate features) besides ``forward``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.datasets.base import Dataset
from core.registry import Registry


@dataclass(frozen=True)
class StudentShape:
    """What a student must adapt to."""

    channels: int
    image_size: int
    num_classes: int

    @classmethod
    def of(cls, data: Dataset) -> StudentShape:
        return cls(data.channels, data.image_size, data.num_classes)


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


class InstanceNorm(nn.GroupNorm):
    """Instance norm with affine parameters, as the DD lineage writes it (one group per channel)."""

    def __init__(self, num_channels: int, **kwargs: object):
        super().__init__(num_channels, num_channels, affine=True)


SMALL_IMAGE = 64  # up to this size, residual students keep full resolution in the stem


class _APBlock(nn.Module):
    """A basic residual block that down-samples with 2x2 average pooling instead of a stride."""

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = InstanceNorm(cout)
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = InstanceNorm(cout)
        self.shortcut = nn.Identity()
        if downsample or cin != cout:
            self.shortcut = nn.Sequential(
                nn.AvgPool2d(2) if downsample else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False), InstanceNorm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.pool(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetAP(nn.Module):
    """IDC's ResNetAP: a ResNet whose stages down-sample by average pooling."""

    def __init__(self, shape: StudentShape, width: int = 64, blocks: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        if shape.image_size <= SMALL_IMAGE:
            stem = [nn.Conv2d(shape.channels, width, 3, padding=1, bias=False), InstanceNorm(width), nn.ReLU()]
            size = shape.image_size
        else:
            stem = [nn.Conv2d(shape.channels, width, 7, stride=2, padding=3, bias=False), InstanceNorm(width),
                    nn.ReLU(), nn.AvgPool2d(3, stride=2, padding=1)]
            size = shape.image_size // 4
        layers: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(blocks):
            cout = width * 2 ** stage
            for b in range(count):
                layers.append(_APBlock(cin, cout, downsample=stage > 0 and b == 0))
                cin = cout
        if size // 2 ** (len(blocks) - 1) < 1:
            raise ValueError(f"image size {shape.image_size} is too small for ResNetAP")
        self.features = nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = cin
        self.classifier = nn.Linear(cin, shape.num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class TimmStudent(nn.Module):
    """A timm network behind the students' interface (``forward`` and ``embed``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_arch("convnet3")
def convnet3(shape: StudentShape, width: int = 128) -> nn.Module:
    return ConvNet(shape, width=width, depth=3)


@register_arch("convnet3-w32")
def convnet3_w32(shape: StudentShape, width: int = 32) -> nn.Module:
    return ConvNet(shape, width=width, depth=3)


@register_arch("convnet6")
def convnet6(shape: StudentShape, width: int = 128) -> nn.Module:
    return ConvNet(shape, width=width, depth=6)


@register_arch("resnetap10")
def resnetap10(shape: StudentShape, width: int = 64) -> nn.Module:
    return ResNetAP(shape, width=width)


@register_arch("resnet18")
def resnet18(shape: StudentShape, width: int = 64) -> nn.Module:
    from timm.models.resnet import BasicBlock, ResNet

    net = ResNet(BasicBlock, (2, 2, 2, 2), num_classes=shape.num_classes, in_chans=shape.channels,
                 channels=tuple(width * 2 ** i for i in range(4)), norm_layer=InstanceNorm)
    if shape.image_size <= SMALL_IMAGE:
        # timm's plain stem always has 64 channels; keep them so its first stage still fits
        net.conv1 = nn.Conv2d(shape.channels, net.conv1.out_channels, 3, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return TimmStudent(net)


def build_student(name: str, shape: StudentShape, width: int | None = None) -> nn.Module:
    """Build a registered student; ``width`` overrides the default width where a budget asks."""
    factory = ARCHS.get(name)
    return factory(shape) if width is None else factory(shape, width=width)
