"""The shared student loop: it learns, it is deterministic for a seed, it scores correctly."""
import dataclasses

import torch

from benchmark.datasets import load_dataset
from evaluators.archs import StudentShape, build_student
from evaluators.evaluate import evaluate_set
from evaluators.protocols import resolve
from evaluators.train import accuracy


def test_convnet3_adapts_to_shapes():
    for shape in (StudentShape(1, 28, 10), StudentShape(3, 32, 100), StudentShape(1, 8, 10)):
        net = build_student("convnet3", shape, width=8)
        out = net(torch.zeros(2, shape.channels, shape.image_size, shape.image_size))
        assert out.shape == (2, shape.num_classes)
    norms = [m for m in build_student("convnet3", StudentShape(1, 28, 10)).modules()
             if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and all(m.num_groups == m.num_channels == 128 for m in norms)


def test_accuracy_counts_correct_predictions():
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = torch.tensor([0, 1, 2, 2]).float().view(4, 1, 1, 1)
    assert accuracy(Fixed(), x, torch.tensor([0, 1, 2, 0]), batch_size=3) == 75.0


def test_student_learns_and_is_deterministic():
    data = load_dataset("digits")
    protocol, budget = resolve("dc", "smoke")
    # ConvNet-3 learns 8x8 digits slowly at the DC learning rate; a faster rate shows the loop learns
    protocol = dataclasses.replace(protocol, lr=0.1)
    budget = dataclasses.replace(budget, epochs=100)
    images, labels = data.train.float_images()[:300], data.train.labels[:300]
    a = evaluate_set(images, labels, data, "convnet3", protocol, budget, seed=3, device=torch.device("cpu"))
    b = evaluate_set(images, labels, data, "convnet3", protocol, budget, seed=3, device=torch.device("cpu"))
    c = evaluate_set(images, labels, data, "convnet3", protocol, budget, seed=4, device=torch.device("cpu"))
    assert a.test_acc == b.test_acc and a.final_loss == b.final_loss
    assert a.final_loss != c.final_loss
    assert a.test_acc > 70.0  # chance is 10%
    assert a.train_steps == 202  # 300 images: 2 batches per epoch, 100 + 1 epochs
