"""Image-quality metrics against values computed by hand."""
import math

import pytest
import torch

from evaluators.quality import coverage, frechet_distance, within_class_diversity


def test_frechet_distance_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square():
    torch.manual_seed(0)
    a = torch.randn(500, 4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0])
    assert frechet_distance(a + shift, a) == pytest.approx(5.0, rel=1e-6)


def test_frechet_distance_between_two_known_gaussian_fits():
    # 1-D: points {-1, 1} (mean 0, var 2) vs {2, 4} (mean 3, var 2): 9 + 2 + 2 - 2 * 2 = 9
    a, b = torch.tensor([[-1.0], [1.0]]), torch.tensor([[2.0], [4.0]])
    assert frechet_distance(a, b) == pytest.approx(9.0)


def test_diversity_is_mean_pairwise_cosine_distance_within_classes():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: orthogonal, distance 1; class 1: parallel, distance 0 -> mean 0.5
    assert within_class_diversity(f, labels) == pytest.approx(0.5)
    assert within_class_diversity(f[:2], torch.tensor([0, 1])) is None


def test_coverage_counts_real_images_whose_nearest_distilled_image_has_their_class():
    distilled = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    real = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.2], [0.0, 1.0]])
    real_labels = torch.tensor([0, 1, 1, 1])  # the third is nearest to class 0: a miss
    assert coverage(distilled, labels, real, real_labels) == pytest.approx(75.0)
    assert not math.isnan(coverage(distilled, labels, real, real_labels))


@pytest.mark.parametrize(("n", "m"), [(20, 30), (200, 500), (1, 40)])
def test_the_low_rank_form_of_the_frechet_distance_equals_the_dense_one(n, m):
    from evaluators.quality import _frechet_distance_low_rank

    g = torch.Generator().manual_seed(n)
    a = torch.randn(n, 64, generator=g) * torch.linspace(0.1, 2.0, 64)
    b = torch.randn(m, 64, generator=g) + 0.3
    assert _frechet_distance_low_rank(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-6, abs=1e-6)


def test_features_wider_than_the_dense_limit_take_the_low_rank_form():
    import numpy as np
    from scipy import linalg

    from evaluators.quality import DENSE_FD_MAX_DIM

    g = torch.Generator().manual_seed(0)
    d = DENSE_FD_MAX_DIM + 76
    a, b = torch.randn(20, d, generator=g), torch.randn(30, d, generator=g) + 0.1
    a64, b64 = a.double().numpy(), b.double().numpy()  # the dense formula, by hand
    c1, c2 = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    dense = ((a64.mean(0) - b64.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(a, b) == pytest.approx(dense, rel=1e-5)
    wide = frechet_distance(torch.randn(20, 25088, generator=g), torch.randn(30, 25088, generator=g))
    assert math.isfinite(wide) and wide > 0  # ConvNet-3 at 224 px: a dense covariance would need 5 GB
