"""Batched augmentation: shapes, determinism for a seed, and what each op does."""
import math

import pytest
import torch

from evaluators.augment import (AUGMENTATIONS, DSA_OPS, cutmix, dsa_cutout, flip, random_resized_crop)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_recipes_keep_shape_and_are_deterministic(name):
    x = torch.randn(16, 3, 32, 32)
    a, b = AUGMENTATIONS[name](x, _gen(5)), AUGMENTATIONS[name](x, _gen(5))
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
