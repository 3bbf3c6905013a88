"""Student architectures, registered by name and built for a data set's shape.

Each student is built as its reference code builds it (the DC code's ConvNet, IDC's ResNetAP
and ResNet), and `tests/test_students.py` checks its defining figures against that code.
ConvNet-3/6: blocks of [3x3 conv, instance norm (group norm with one group per channel,
affine), ReLU, 2x2 average pool], then a linear classifier. ResNetAP-10 (IDC) down-samples by
average pooling; ResNet-18 is timm's with instance norm. Both take IDC's stem by resolution.
Every student has ``feature_map(x)`` (the map the classifier reads), ``embed(x)``
(penultimate features) and ``feature_dim`` (the classifier's input width) besides ``forward``.
"""
from __future__ import annotations

import math
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
    """The DC-lineage ConvNet with instance norm and average pooling. As the DC code builds it,
    a one-channel input is padded by 3 in the first convolution (28 px maps to 32, as on CIFAR)."""

    def __init__(self, shape: StudentShape, width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = shape.channels, shape.image_size
        for d in range(depth):
            pad = 3 if d == 0 and shape.channels == 1 else 1
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=pad),
                nn.GroupNorm(width, width, affine=True),
                nn.ReLU(inplace=True),
                nn.AvgPool2d(kernel_size=2, stride=2),
            ]
            channels, size = width, (size + 2 * pad - 2) // 2
            if size < 1:
                raise ValueError(f"image size {shape.image_size} is too small for ConvNet depth {depth}")
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, shape.num_classes)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's output, which the classifier reads flattened."""
        return self.features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (flattened), used by herding and the quality metrics."""
        return self.feature_map(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class InstanceNorm(nn.GroupNorm):
    """Instance norm with affine parameters, as the DD lineage writes it (one group per channel)."""

    def __init__(self, num_channels: int, **kwargs: object):
        super().__init__(num_channels, num_channels, affine=True)


SMALL_IMAGE = 64  # up to this size, residual students keep full resolution in the stem
MID_IMAGE = 128  # from SMALL_IMAGE + 1 to this size, IDC's stem is a 3x3 convolution then a pool


def stem_size(image_size: int) -> str:
    """IDC's three stems (`models/resnet_ap.py`, `models/resnet.py`): by resolution."""
    if image_size <= SMALL_IMAGE:
        return "small"
    return "mid" if image_size <= MID_IMAGE else "large"


class _APBlock(nn.Module):
    """IDC's basic block: the first convolution, norm and ReLU, then 2x2 average pooling where
    the stage down-samples; the shortcut is a 1x1 convolution, the same pooling, then a norm."""

    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = InstanceNorm(cout)
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = InstanceNorm(cout)
        self.shortcut = nn.Identity()
        if downsample or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                          nn.AvgPool2d(2) if downsample else nn.Identity(), InstanceNorm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(torch.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _ap_stem(channels: int, width: int, image_size: int) -> tuple[list[nn.Module], int]:
    """IDC's ResNetAP stem and the map size after it: 3x3 (small), 3x3 then 2x2 average pool
    (mid), 7x7 at stride 1 then 4x4 average pool (large)."""
    kind = stem_size(image_size)
    kernel = 7 if kind == "large" else 3
    stem: list[nn.Module] = [nn.Conv2d(channels, width, kernel, padding=kernel // 2, bias=False),
                             InstanceNorm(width), nn.ReLU()]
    pool = {"small": 1, "mid": 2, "large": 4}[kind]
    if pool > 1:
        stem.append(nn.AvgPool2d(pool))
    return stem, image_size // pool


def init_like_idc(model: nn.Module) -> None:
    """IDC's initialisation: convolutions from N(0, 2 / (k * k * out channels)), norms at 1 and 0
    (linear layers keep PyTorch's default)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetAP(nn.Module):
    """IDC's ResNetAP (ImageNet layout): a ResNet whose stages down-sample by average pooling."""

    def __init__(self, shape: StudentShape, width: int = 64, blocks: tuple[int, ...] = (1, 1, 1, 1)):
        super().__init__()
        stem, size = _ap_stem(shape.channels, width, shape.image_size)
        layers: list[nn.Module] = []
        cin = width
        for stage, count in enumerate(blocks):
            cout = width * 2 ** stage
            for b in range(count):
                layers.append(_APBlock(cin, cout, downsample=stage > 0 and b == 0))
                cin = cout
        if size // 2 ** (len(blocks) - 1) < 1:
            raise ValueError(f"image size {shape.image_size} is too small for ResNetAP")
        self.body = nn.Sequential(*stem, *layers)
        self.feature_dim = cin
        self.classifier = nn.Linear(cin, shape.num_classes)
        init_like_idc(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output, before the global average pool."""
        return self.body(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class TimmStudent(nn.Module):
    """A timm network behind the students' interface (``forward`` and ``embed``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.feature_dim = model.num_features

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

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
    """IDC's ResNet-18 (`models/resnet.py`) as timm builds it: instance norm, IDC's initialisation
    (no zeroed last norm); stem 3x3 at stride 1 up to 64 px, then a 3x3 max pool up to 128 px,
    above that the standard 7x7 stride-2 convolution and max pool."""
    from timm.models.resnet import BasicBlock, ResNet

    net = ResNet(BasicBlock, (2, 2, 2, 2), num_classes=shape.num_classes, in_chans=shape.channels,
                 channels=tuple(width * 2 ** i for i in range(4)), norm_layer=InstanceNorm, zero_init_last=False)
    kind = stem_size(shape.image_size)
    if kind != "large":
        # timm's plain stem always has 64 channels; keep them so its first stage still fits
        net.conv1 = nn.Conv2d(shape.channels, net.conv1.out_channels, 3, padding=1, bias=False)
    if kind == "small":
        net.maxpool = nn.Identity()
    init_like_idc(net)
    return TimmStudent(net)


def build_student(name: str, shape: StudentShape, width: int | None = None) -> nn.Module:
    """Build a registered student; ``width`` overrides the default width where a budget asks."""
    factory = ARCHS.get(name)
    return factory(shape) if width is None else factory(shape, width=width)
