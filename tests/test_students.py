"""Every student against its reference code: parameters, the feature map the classifier reads,
and the classifier's input width, for the input shapes the benchmark uses.

The expected figures are worked out by hand from the reference implementations (10 classes):
- ConvNet: DC code, `utils.py` `ConvNet._make_layers` (VICO-UoE/DatasetCondensation; IDC's
  `models/convnet.py` is the same): 3x3 convolutions with bias, padding 3 in the first one when
  the input has one channel (a 28 px map becomes 32), GroupNorm(C, C) with affine (2C
  parameters), 2x2 average pooling, then Linear(C x H x W, 10).
  Per block: conv 128*9*c_in + 128, norm 256; the classifier 10 * features + 10.
- ResNetAP-10: IDC `models/resnet_ap.py` (MinimaxDiffusion `train_models/resnet_ap.py`),
  ImageNet layout, instance norm, width 64: bias-free convolutions; stem 3x3 up to 64 px,
  3x3 then average pool 2 up to 128 px, 7x7 (stride 1) then average pool 4 above; stages of
  one block 64, 128, 256, 512 with a 1x1 shortcut where a stage down-samples.
  Blocks: 73,984 + 230,144 + 919,040 + 3,673,088, classifier 5,130 = 4,901,386 besides the stem
  (3x3: 9 * 64 * c_in + 128; 7x7: 49 * 64 * 3 + 128 = 9,536).
- ResNet-18: IDC `models/resnet.py`, ImageNet layout, instance norm: stem 3x3 (no pool) up to
  64 px, 3x3 then 3x3/2 max pool up to 128 px, 7x7/2 then max pool above; two blocks per
  stage, strided 3x3 convolutions. Blocks 147,968 + 525,568 + 2,099,712 + 8,393,728, classifier
  5,130 = 11,172,106 besides the stem.
"""
import math

import pytest
import torch

from core.archs import StudentShape, build_student

SHAPES = [(1, 28), (3, 32), (3, 64), (3, 128), (3, 224)]

# (arch, channels, size): (parameters, feature map (C, H, W), classifier input width)
EXPECTED = {
    # ConvNet-3: convolutions and norms 297,216 (one channel) / 299,520 (three)
    ("convnet3", 1, 28): (317_706, (128, 4, 4), 2048),  # 28 + 2*3 - 2 = 32 -> 16 -> 8 -> 4
    ("convnet3", 3, 32): (320_010, (128, 4, 4), 2048),
    ("convnet3", 3, 64): (381_450, (128, 8, 8), 8192),
    ("convnet3", 3, 128): (627_210, (128, 16, 16), 32768),
    ("convnet3", 3, 224): (1_303_050, (128, 28, 28), 100352),
    # ConvNet-6: three more blocks of 147,840; six halvings need 64 px (28 and 32 px end at 0)
    ("convnet6", 1, 28): None,
    ("convnet6", 3, 32): None,
    ("convnet6", 3, 64): (744_330, (128, 1, 1), 128),
    ("convnet6", 3, 128): (748_170, (128, 2, 2), 512),
    ("convnet6", 3, 224): (754_570, (128, 3, 3), 1152),  # 112, 56, 28, 14, 7, 3
    # ResNetAP-10: 28 -> 28, 14, 7, 3 (floor pooling); 128 px: stem pool 2 -> 64 ... 8; 224: pool 4 -> 56 ... 7
    ("resnetap10", 1, 28): (4_902_090, (512, 3, 3), 512),
    ("resnetap10", 3, 32): (4_903_242, (512, 4, 4), 512),
    ("resnetap10", 3, 64): (4_903_242, (512, 8, 8), 512),
    ("resnetap10", 3, 128): (4_903_242, (512, 8, 8), 512),
    ("resnetap10", 3, 224): (4_910_922, (512, 7, 7), 512),
    # ResNet-18: a strided 3x3 convolution maps 7 to 4; 128 px: max pool -> 64 ... 8; 224: 112, 56 ... 7
    ("resnet18", 1, 28): (11_172_810, (512, 4, 4), 512),
    ("resnet18", 3, 32): (11_173_962, (512, 4, 4), 512),
    ("resnet18", 3, 64): (11_173_962, (512, 8, 8), 512),
    ("resnet18", 3, 128): (11_173_962, (512, 8, 8), 512),
    ("resnet18", 3, 224): (11_181_642, (512, 7, 7), 512),
}


@pytest.mark.parametrize("arch,channels,size", sorted(EXPECTED))
def test_student_matches_its_reference_architecture(arch, channels, size):
    expected = EXPECTED[(arch, channels, size)]
    shape = StudentShape(channels, size, 10)
    if expected is None:
        with pytest.raises(ValueError, match="too small"):
            build_student(arch, shape)
        return
    params, feature_map, width = expected
    net = build_student(arch, shape).eval()
    x = torch.zeros(2, channels, size, size)
    with torch.no_grad():
        assert sum(p.numel() for p in net.parameters()) == params
        assert tuple(net.feature_map(x).shape[1:]) == feature_map
        assert net.feature_dim == width and net.embed(x).shape == (2, width)
        assert net(x).shape == (2, 10)


@pytest.mark.parametrize("arch", ["resnetap10", "resnet18"])
def test_residual_students_start_from_idc_initialisation(arch):
    # IDC: every convolution from N(0, 2 / (k * k * out channels)); norms at weight 1, bias 0
    torch.manual_seed(0)
    net = build_student(arch, StudentShape(3, 64, 10))
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 20_000:
            expected = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
            assert float(m.weight.detach().std()) == pytest.approx(expected, rel=0.05)
        if isinstance(m, torch.nn.GroupNorm):
            assert bool((m.weight == 1).all()) and bool((m.bias == 0).all())
