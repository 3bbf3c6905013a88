"""Students trained as one stacked model equal students trained one by one (issue 16, item 1)."""
import dataclasses

import pytest
import torch

from core.archs import StudentShape, build_student
from core.augment import Standardisation
from evaluators.batched import StackedStudents, train_batched
from evaluators.protocols import resolve
from evaluators.train import Validation, accuracy, train

SHAPE = StudentShape(1, 16, 10)
STATS = Standardisation((0.5,), (0.25,))
SEEDS = (0, 1, 7)


def _students(arch: str, width: int = 8, shape: StudentShape = SHAPE) -> list[torch.nn.Module]:
    out = []
    for seed in SEEDS:  # as `evaluators.evaluate` initialises a student: from its seed
        torch.manual_seed(seed)
        out.append(build_student(arch, shape, width=width))
    return out


def _set(n: int = 40, px: int = SHAPE.image_size) -> tuple[torch.Tensor, torch.Tensor, Validation]:
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(n, 1, px, px, generator=g), torch.arange(n) % 10
    return x, y, Validation(torch.randn(30, 1, px, px, generator=g), torch.arange(30) % 10)


def _schedule(protocol_name: str, steps: int):
    protocol, budget = resolve(protocol_name, "smoke")
    schedule = dataclasses.replace(protocol.schedule(budget, 40), steps=steps, batch_size=16, eval_every=3,
                                   milestones=(4,))
    return protocol, schedule


@pytest.mark.parametrize("protocol_name,arch,px", [("dc", "convnet3", 16), ("idc", "convnet3", 16),
                                                   ("dc", "resnetap10", 16), ("dc", "convnet6", 64)])
def test_stacked_students_end_where_separate_students_end(protocol_name, arch, px):
    # dc: DSA augmentation, SGD with a momentum reset at the milestone; idc: the IDC recipe
    # (crop, flip, colour jitter, lighting) and CutMix; validation selection in both.
    protocol, schedule = _schedule(protocol_name, steps=7)
    x, y, val = _set(px=px)
    shape = StudentShape(1, px, 10)
    separate, together = _students(arch, 4 if px > 16 else 8, shape), _students(arch, 4 if px > 16 else 8, shape)
    alone = [train(m, x, y, protocol, schedule, seed, validation=val, standardisation=STATS)
             for m, seed in zip(separate, SEEDS)]
    seen: list[tuple[int, float]] = []
    batched = train_batched(together, [(x, y)] * len(SEEDS), protocol, schedule, SEEDS, validation=val, standardisation=STATS,
                            observe=lambda i, m: seen.append((i, accuracy(m, val.images, val.labels))))
    for a, b, one, many in zip(separate, together, alone, batched):
        for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(wa, wb, atol=2e-5, rtol=1e-4), name
        assert one.selected_step == many.selected_step and one.val_acc == pytest.approx(many.val_acc)
        for name, wa in one.selected_state.items():
            assert torch.allclose(wa, many.selected_state[name], atol=2e-5, rtol=1e-4), name
        assert one.final_loss == pytest.approx(many.final_loss, rel=1e-4)
    assert len(seen) == 3 * len(SEEDS)  # scorings after steps 3, 6 and 7, each student observed
    # the students really differ: a test of equal students could not catch a mixed-up seed
    assert not torch.allclose(separate[0].state_dict()["classifier.weight"],
                              separate[1].state_dict()["classifier.weight"])


def test_teacher_labels_are_taken_per_student_batch():
    protocol, schedule = _schedule("softlabel", steps=4)
    x, y, _ = _set()
    torch.manual_seed(9)
    teacher = build_student("convnet3", SHAPE, width=8).eval()
    separate, together = _students("convnet3"), _students("convnet3")
    for m, seed in zip(separate, SEEDS):
        train(m, x, y, protocol, dataclasses.replace(schedule, eval_every=0), seed, teacher=teacher,
              standardisation=STATS)
    train_batched(together, [(x, y)] * len(SEEDS), protocol, dataclasses.replace(schedule, eval_every=0), SEEDS,
                  teacher=teacher,
                  standardisation=STATS)
    for a, b in zip(separate, together):
        for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(wa, wb, atol=2e-5, rtol=1e-4), name


def test_stacked_accuracies_equal_each_students_own():
    x, y, val = _set()
    students = _students("convnet3")
    stack = StackedStudents(students)
    assert stack.accuracies(val.images, val.labels, batch_size=7) == [accuracy(m, val.images, val.labels)
                                                                      for m in students]
    protocol, schedule = _schedule("dc", steps=1)
    with pytest.raises(ValueError, match="one set and one seed per student"):
        train_batched(students, [(x, y)] * 3, protocol, schedule, (0,), validation=val, standardisation=STATS)
    with pytest.raises(ValueError, match="sets of one size"):
        train_batched(students, [(x, y), (x, y), (x[:20], y[:20])], protocol, schedule, SEEDS, validation=val,
                      standardisation=STATS)


def test_each_student_can_train_on_its_own_set():
    # a method whose set depends on the seed: student i on set i, as separate training would
    protocol, schedule = _schedule("dc", steps=5)
    g = torch.Generator().manual_seed(11)
    sets = [(torch.randn(40, 1, SHAPE.image_size, SHAPE.image_size, generator=g), torch.arange(40) % 10)
            for _ in SEEDS]
    separate, together = _students("convnet3"), _students("convnet3")
    for m, (x, y), seed in zip(separate, sets, SEEDS):
        train(m, x, y, protocol, dataclasses.replace(schedule, eval_every=0), seed)
    train_batched(together, sets, protocol, dataclasses.replace(schedule, eval_every=0), SEEDS)
    for a, b in zip(separate, together):
        for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(wa, wb, atol=2e-5, rtol=1e-4), name


def test_the_choice_is_measured_once_per_device_and_shape_and_recorded(tmp_path, monkeypatch):
    from core.artifacts import ArtifactCache
    from evaluators import batching

    cache, cpu = ArtifactCache(tmp_path), torch.device("cpu")
    first = batching.choose("convnet3", SHAPE, 4, 8, 2, cpu, cache)
    assert first.mode in (batching.BATCHED, batching.SEPARATE) and first.separate_ms_per_step > 0
    assert (first.mode == batching.BATCHED) == (first.batched_ms_per_step < first.separate_ms_per_step)
    assert len(list((tmp_path / batching.KIND).glob("*.safetensors"))) == 1

    def not_again(*args, **kwargs):
        raise AssertionError("measured twice")

    monkeypatch.setattr(batching, "measure", not_again)
    assert batching.choose("convnet3", SHAPE, 4, 8, 2, cpu, cache) == first  # read back from the cache
    metrics = first.metrics()
    assert metrics["student_batching"] == first.mode and metrics["student_batching_students"] == 2
    # what is never stacked, or cannot be, trains one by one, saying why
    assert batching.choose("resnet18", SHAPE, 4, 8, 2, cpu, cache).mode == batching.SEPARATE
    assert batching.choose("convnet3", SHAPE, 4, 8, 1, cpu, cache).reason == "one student"
    assert batching.choose("convnet3", SHAPE, 4, 8, 2, cpu, cache, "always").mode == batching.BATCHED

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(batching, "measure", out_of_memory)
    fallback = batching.choose("convnet3", SHAPE, 4, 16, 3, cpu, cache)
    assert fallback.mode == batching.SEPARATE and "out of memory" in fallback.reason
    with pytest.raises(ValueError, match="stacking policy"):
        batching.choose("convnet3", SHAPE, 4, 8, 2, cpu, cache, "sometimes")
