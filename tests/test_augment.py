"""Batched augmentation: shapes, determinism for a seed, and what each op does."""
import math

import pytest
import torch

from core.augment import (AUGMENTATIONS, DSA_OPS, EIGVAL, EIGVEC, JITTER_TARGETS, Standardisation,
                                color_jitter, cutmix, dsa_cutout, flip, idc_augment, pca_lighting,
                                random_resized_crop)

IMAGENET = Standardisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_recipes_keep_shape_and_are_deterministic(name):
    x = torch.randn(16, 3, 32, 32)
    a, b = AUGMENTATIONS[name](x, _gen(5), IMAGENET), AUGMENTATIONS[name](x, _gen(5), IMAGENET)
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.isfinite(a).all()


@pytest.mark.parametrize("op", DSA_OPS, ids=lambda op: op.__name__)
def test_every_dsa_op_changes_some_images(op):
    x = torch.randn(32, 1, 28, 28)
    assert not torch.equal(op(x, _gen(1)), x)


def test_flip_mirrors_exactly_the_drawn_images():
    x = torch.randn(64, 1, 4, 4)
    out = flip(x, _gen(2))
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def test_cutout_zeroes_a_square_of_half_the_side():
    out = dsa_cutout(torch.ones(8, 1, 16, 16), _gen(3))
    holes = (out == 0).flatten(1).sum(1)
    assert bool((holes > 0).all()) and int(holes.max()) <= 9 * 9


def test_cutmix_lambda_is_the_kept_area():
    x = torch.arange(4).float().view(4, 1, 1, 1).expand(4, 1, 16, 16).contiguous()
    mixed, perm, lam = cutmix(x, _gen(4))
    for i in range(4):
        kept = float((mixed[i] == x[i]).float().mean())
        if perm[i] != i:
            assert math.isclose(kept, lam, abs_tol=1e-6)


def test_random_resized_crop_with_full_scale_is_nearly_identity():
    x = torch.randn(4, 1, 16, 16)
    out = random_resized_crop(x, _gen(0), (1.0, 1.0))
    assert out.shape == x.shape


def _only(monkeypatch, *targets):
    """Restrict IDC's colour jitter to some of its three blends (the others become no-ops)."""
    import core.augment as augment

    keep = {t.__name__ for t in targets}
    monkeypatch.setattr(augment, "JITTER_TARGETS",
                        tuple(t if t.__name__ in keep else (lambda x: x) for t in JITTER_TARGETS))


def test_brightness_scales_a_pixel_image_by_at_most_forty_percent(monkeypatch):
    from core.augment import _brightness

    _only(monkeypatch, _brightness)
    x = torch.rand(2000, 3, 4, 4) * 0.8 + 0.1
    ratio = color_jitter(x, _gen(0), 0.4).mean((1, 2, 3)) / x.mean((1, 2, 3))
    # a blend towards black by a ~ U(-0.4, 0.4): every pixel times 1 - a
    assert float(ratio.min()) >= 0.6 - 1e-6 and float(ratio.max()) <= 1.4 + 1e-6
    assert float(ratio.min()) < 0.62 and float(ratio.max()) > 1.38
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.02)
    assert float(ratio.std()) == pytest.approx(0.8 / math.sqrt(12), rel=0.08)  # uniform of width 0.8


def test_contrast_keeps_the_grey_mean_and_saturation_keeps_the_grey_image(monkeypatch):
    from core.augment import _contrast, _grey

    x = torch.rand(500, 3, 6, 6)
    _only(monkeypatch, _contrast)
    out = color_jitter(x, _gen(1))
    assert torch.allclose(_grey(out).mean((1, 2, 3)), _grey(x).mean((1, 2, 3)), atol=1e-5)
    def spread_of(t):
        return (t - t.mean((1, 2, 3), keepdim=True)).std((1, 2, 3))

    spread = spread_of(out) / spread_of(x)
    assert 0.6 - 1e-4 <= float(spread.min()) < 0.65 and 1.35 < float(spread.max()) <= 1.4 + 1e-4
    _only(monkeypatch, _grey)
    out = color_jitter(x, _gen(2))
    assert torch.allclose(_grey(out), _grey(x), atol=1e-5) and not torch.allclose(out, x)


def test_jitter_blends_commute_so_a_fixed_order_equals_idcs_shuffled_one():
    import itertools

    from core.augment import _rand

    x = torch.rand(64, 3, 5, 5)
    alpha = _rand(64 * 3, _gen(7), x.device, -0.4, 0.4).view(64, 3)
    results = []
    for order in itertools.permutations(range(3)):
        y = x
        for k in order:
            a = alpha[:, k].view(-1, 1, 1, 1)
            y = y + a * (JITTER_TARGETS[k](y) - y)
        results.append(y)
    assert all(torch.allclose(r, results[0], atol=1e-6) for r in results)
    assert torch.allclose(color_jitter(x, _gen(7)), results[0], atol=1e-6)


def test_pca_lighting_moves_pixels_by_the_documented_amount():
    # IDC's Lighting: each image gets EIGVEC @ (alpha * EIGVAL), alpha ~ N(0, 0.1): a constant
    # shift per image and channel with std 0.1 * sqrt(sum_j (EIGVEC[c, j] * EIGVAL[j])^2)
    x = torch.full((4000, 3, 2, 2), 0.5)
    shift = pca_lighting(x, _gen(4), 0.1) - x
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift))
    expected = 0.1 * (EIGVEC * EIGVAL).pow(2).sum(1).sqrt()  # about 0.0124 per channel
    assert torch.allclose(shift[:, :, 0, 0].std(0), expected, rtol=0.06)
    assert torch.allclose(shift[:, :, 0, 0].mean(0), torch.zeros(3), atol=0.002)
    assert pca_lighting(torch.zeros(2, 1, 3, 3), _gen(0)).abs().sum() == 0  # only 3-channel images


def test_idc_recipe_colours_pixels_before_standardising():
    # IDC (and Minimax) jitter and light [0, 1] images, then standardise. A black image stays
    # black up to the lighting shift (brightness and contrast blend towards black), and a white one
    # is scaled by at most 40 % plus that shift. Jitter on standardised values would instead scale
    # around the data set's mean and turn black into grey.
    black = IMAGENET.from_pixels(torch.zeros(300, 3, 8, 8))
    out = IMAGENET.to_pixels(idc_augment(black, _gen(5), IMAGENET))
    assert float(out.abs().max()) < 0.1 and float(out.abs().mean()) < 0.02  # lighting: std about 0.012
    white = IMAGENET.from_pixels(torch.ones(300, 3, 8, 8))
    out = IMAGENET.to_pixels(idc_augment(white, _gen(6), IMAGENET))
    assert 0.55 < float(out.min()) and float(out.max()) < 1.45
    assert float(out.mean((1, 2, 3)).std()) > 0.1  # the brightness draws are there
