"""The field's other methods (kcenter, dc, dsa, dm): each central computation against a hand
computation on tiny tensors, the Siamese augmentation, seeding, resumption and refusals."""
import math

import pytest
import torch

from benchmark.grid.trial import distill_context
from core.artifacts import ArtifactCache
from core.augment import DSA_OPS, NO_FLIP, dsa_siamese, flip
from core.datasets import load_dataset
from core.errors import BenchError
from methods import matching, resolve_method
from methods.dc import LOOPS, gradient_distance, layer_distance, loops_for
from methods.dm import mean_embedding_loss
from methods.kcenter import kcenter_order

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ctx(tmp_path):
    return distill_context(ArtifactCache(tmp_path / "cache"), torch.device("cpu"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_kcenter_picks_the_point_nearest_the_mean_then_the_farthest_each_time():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [9.0]])  # mean 4.4: nearest is 2.0
    # then 10 (8 from 2), then 0 (2 from 2; 9 is 1 from 10 and 1 is 1 from 2), then 9 or 1 (both 1)
    assert kcenter_order(points, 4) == [2, 3, 0, 1]
    torch.manual_seed(0)
    feats = torch.randn(40, 3)
    order = kcenter_order(feats, 6)
    chosen = [int((feats - feats.mean(0)).norm(dim=1).argmin())]  # brute force of the same rule
    while len(chosen) < 6:
        gaps = [min(float((feats[i] - feats[j]).norm()) for j in chosen) for i in range(40)]
        chosen.append(max((i for i in range(40) if i not in chosen), key=lambda i: gaps[i]))
    assert order == chosen and len(set(order)) == 6


def test_kcenter_selects_real_images_of_each_class_from_the_teacher(ctx, digits):
    method = resolve_method("kcenter[teacher_steps=30]").distiller
    method.prepare(digits, ctx)
    picked = method.distill(digits, 3, seed=0, ctx=ctx)
    assert torch.bincount(picked.labels, minlength=10).tolist() == [3] * 10
    idx = torch.tensor(picked.meta["indices"])
    assert torch.equal(picked.images, digits.train.images[idx].float() / 255)
    herded = resolve_method("herding[teacher_steps=30]").distiller.distill(digits, 3, seed=0, ctx=ctx)
    assert picked.meta["teacher_key"] == herded.meta["teacher_key"]  # the same feature space
    assert picked.meta["indices"] != herded.meta["indices"]


def test_dm_loss_is_the_squared_distance_of_the_class_means():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    syn = torch.tensor([[0.0, 1.0]])  # mean (0, 1)
    assert float(mean_embedding_loss(real, syn)) == pytest.approx(2.0 ** 2 + 2.0 ** 2)


def test_gradient_distance_is_one_minus_cosine_per_output_unit_summed_over_weight_layers():
    real = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    syn = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # unit 0 orthogonal (1 - 0), unit 1 parallel (1 - 1)
    assert float(layer_distance(real, syn)) == pytest.approx(1.0, abs=1e-5)
    conv_real, conv_syn = torch.randn(3, 2, 3, 3), torch.randn(3, 2, 3, 3)  # rows: a kernel each
    rows = [1 - torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()) for a, b in zip(conv_real, conv_syn)]
    assert float(layer_distance(conv_real, conv_syn)) == pytest.approx(float(sum(rows)), abs=1e-5)
    assert float(layer_distance(torch.ones(4), -torch.ones(4))) == 0.0  # biases and norms count nothing
    total = gradient_distance([real, conv_real, torch.ones(4)], [syn, conv_syn, torch.zeros(4)])
    assert float(total) == pytest.approx(1.0 + float(sum(rows)), abs=1e-4)


def test_dc_loops_come_from_the_original_table_unless_set():
    assert LOOPS[10] == (10, 50) and loops_for(50, 0, 0, "dc") == (50, 10)
    assert loops_for(2, 3, 4, "dc") == (3, 4)
    with pytest.raises(BenchError, match="no outer/inner loops for IPC 2"):
        loops_for(2, 0, 0, "dc")


@pytest.mark.parametrize("op", DSA_OPS, ids=lambda op: op.__name__)
def test_the_siamese_draw_transforms_every_image_of_both_batches_alike(op):
    image = torch.rand(1, 1, 12, 12)
    real, syn = image.repeat(5, 1, 1, 1), image.repeat(2, 1, 1, 1)
    g = torch.Generator().manual_seed(3)
    out_real, out_syn = dsa_siamese([real, syn], g, (op,))
    assert torch.equal(out_real, out_real[:1].expand_as(out_real))  # one draw for the whole batch
    assert torch.allclose(out_syn, out_real[:2])  # and the same one for the other batch
    if op is not flip:  # flip may draw "keep"
        assert not torch.equal(out_real, real)


def test_the_siamese_augmentation_is_differentiable_and_digits_leave_flip_out(digits):
    syn = torch.rand(3, 1, 8, 8, requires_grad=True)
    for seed in range(12):
        _, out = dsa_siamese([torch.rand(4, 1, 8, 8), syn], torch.Generator().manual_seed(seed))
        out.sum().backward()
    assert syn.grad is not None and torch.isfinite(syn.grad).all()
    assert matching.dsa_ops(digits) == NO_FLIP and flip not in NO_FLIP and len(NO_FLIP) == len(DSA_OPS) - 1
    assert matching.dsa_ops(load_dataset("fashion-mnist")) == DSA_OPS


def test_a_fresh_network_is_seeded_and_leaves_the_global_state_alone(digits):
    torch.manual_seed(11)
    before = torch.get_rng_state()
    a = matching.fresh_network("convnet3-w32", digits, 5, torch.device("cpu"))
    b = matching.fresh_network("convnet3-w32", digits, 5, torch.device("cpu"))
    c = matching.fresh_network("convnet3-w32", digits, 6, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before)
    pa, pb, pc = (torch.cat([p.flatten() for p in n.parameters()]) for n in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@pytest.mark.parametrize("spec", ["dm[budget=smoke,iterations=3,arch=convnet3-w32]",
                                  "dc[budget=smoke,arch=convnet3-w32]",
                                  "dsa[budget=smoke,arch=convnet3-w32]"])
def test_a_matching_method_is_seeded_and_moves_its_images(ctx, digits, spec):
    method = resolve_method(spec).distiller
    method.validate(digits, 2)
    a = method.distill(digits, 2, seed=0, ctx=ctx)
    b = method.distill(digits, 2, seed=0, ctx=ctx)
    c = method.distill(digits, 2, seed=1, ctx=ctx)
    assert a.labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert 0 <= float(a.images.min()) and float(a.images.max()) <= 1
    assert math.isfinite(a.meta["final_loss"]) and 0 <= a.meta["clipped_fraction"] < 1
    if method.settings.init == "real":  # started from real images, then moved
        start = matching.initial_images(digits, matching.RealPool.of(digits, torch.device("cpu")), 2, "real",
                                        torch.Generator().manual_seed(0))
        pixels = matching.standardisation(digits).to_pixels(start).clamp(0, 1)
        assert not torch.allclose(a.images, pixels) and (a.images - pixels).abs().mean() < 0.5


def test_an_interrupted_dm_resumes_where_it_stopped_with_the_same_result(tmp_path, digits, monkeypatch):
    spec = "dm[budget=smoke,iterations=4,arch=convnet3-w32]"
    whole = resolve_method(spec).distiller.distill(
        digits, 1, seed=0, ctx=distill_context(ArtifactCache(tmp_path / "a"), torch.device("cpu")))
    monkeypatch.setattr(matching, "CHECKPOINT_EVERY_S", 0.0)
    real_fresh, calls = matching.fresh_network, []

    def dies_at_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fresh(*args)

    ctx = distill_context(ArtifactCache(tmp_path / "b"), torch.device("cpu"))
    monkeypatch.setattr(matching, "fresh_network", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        resolve_method(spec).distiller.distill(digits, 1, seed=0, ctx=ctx)
    monkeypatch.setattr(matching, "fresh_network", real_fresh)
    heard = []
    ctx.report = heard.append
    resumed = resolve_method(spec).distiller.distill(digits, 1, seed=0, ctx=ctx)
    assert "dm: resumed at iteration 2/4" in heard
    assert torch.allclose(resumed.images, whole.images, atol=1e-6)


def test_bad_requests_are_refused_in_one_line(digits):
    with pytest.raises(BenchError, match="no outer/inner loops for IPC 2"):
        resolve_method("dc").distiller.validate(digits, 2)
    with pytest.raises(BenchError, match="draws 256 real images per class, but the smallest class of digits"):
        resolve_method("dm").distiller.validate(digits, 1)
    with pytest.raises(BenchError, match="has no budget 'huge'"):
        resolve_method("dm[budget=huge]").distiller.validate(digits, 1)
    with pytest.raises(BenchError, match="init must be 'real' or 'noise'"):
        resolve_method("dsa[init=zeros]")


def test_at_one_image_per_class_kcenter_and_herding_pick_the_same_image():
    from methods.herding import herding_order

    torch.manual_seed(1)
    feats = torch.randn(50, 8)
    assert kcenter_order(feats, 1) == herding_order(feats, 1)  # both: the image nearest the class mean
    assert kcenter_order(feats, 5) != herding_order(feats, 5)
