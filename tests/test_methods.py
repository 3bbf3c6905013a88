"""The foundation methods: random, herding and the full reference."""
import pytest
import torch

from benchmark.grid.trial import distill_context
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.distilled import DistilledSet
from core.errors import BenchError
from methods import resolve_method
from methods.herding import herding_order
from methods.random import random_indices


@pytest.fixture
def ctx(tmp_path):
    return distill_context(ArtifactCache(tmp_path / "cache"), torch.device("cpu"))


def test_random_gives_ipc_per_class_and_same_seed_same_subset(ctx):
    data = load_dataset("digits")
    method = resolve_method("random").distiller
    a = method.distill(data, 5, seed=1, ctx=ctx)
    b = method.distill(data, 5, seed=1, ctx=ctx)
    c = method.distill(data, 5, seed=2, ctx=ctx)
    assert torch.bincount(a.labels, minlength=10).tolist() == [5] * 10
    assert a.meta["indices"] == b.meta["indices"] != c.meta["indices"]
    idx = torch.tensor(a.meta["indices"])
    assert torch.equal(a.images, data.train.images[idx].float() / 255)
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_random_indices_are_distinct_and_in_class():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 2, 2, 2])
    idx = random_indices(labels, 3, 2, seed=0)
    assert len(set(idx.tolist())) == 6
    assert torch.bincount(labels[idx]).tolist() == [2, 2, 2]


def test_herding_order_matches_brute_force_greedy():
    torch.manual_seed(0)
    feats = torch.randn(30, 4)
    order = herding_order(feats, 5)
    mu, chosen = feats.mean(0), []
    for k in range(5):
        best = min((i for i in range(30) if i not in chosen),
                   key=lambda i: float((feats[chosen + [i]].mean(0) - mu).norm()))
        chosen.append(best)
    assert order == chosen


def test_herding_uses_the_cached_teacher(ctx):
    data = load_dataset("digits")
    method = resolve_method("herding[teacher_steps=30]").distiller
    method.prepare(data, ctx)
    dset = method.distill(data, 3, seed=0, ctx=ctx)
    assert torch.bincount(dset.labels, minlength=10).tolist() == [3] * 10
    assert 0 < dset.meta["teacher_test_acc"] <= 100
    assert method.distill(data, 3, seed=7, ctx=ctx).meta["indices"] == dset.meta["indices"]  # deterministic


def test_selection_refuses_ipc_beyond_class_size():
    data = load_dataset("digits")
    smallest = min(data.train.class_counts(10))
    resolve_method("random").distiller.validate(data, smallest)
    with pytest.raises(BenchError, match="larger than the smallest class"):
        resolve_method("random").distiller.validate(data, smallest + 1)


def test_full_is_the_training_split_and_distilled_set_bytes(ctx):
    data = load_dataset("digits")
    full = resolve_method("full").distiller
    dset = full.distill(data, 0, 0, ctx)
    assert len(dset) == len(data.train) and full.reference
    small = DistilledSet(torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))
    assert small.nbytes == 2 * 64 + 2 * 8
    roundtrip = DistilledSet.from_state(small.to_state())
    assert torch.equal(roundtrip.images, small.images)
