"""Protocols as data: the DC schedule and the named budgets."""
import pytest

from benchmark.errors import UnknownNameError
from evaluators.protocols import DC, resolve


def test_dc_paper_schedule_matches_the_dc_code():
    protocol, budget = resolve("dc", "paper")
    assert (protocol.lr, protocol.momentum, protocol.weight_decay, protocol.batch_size) == (0.01, 0.9, 5e-4, 256)
    # IPC 10 on 10 classes: 100 images, one batch per epoch; E + 1 = 301 epochs, decay at epoch 151
    sched = protocol.schedule(budget, 100)
    assert sched.steps == 301 and sched.milestones == (151,) and sched.gamma == 0.1
    # IPC 50: 500 images, two batches per epoch
    sched = protocol.schedule(budget, 500)
    assert sched.steps == 602 and sched.milestones == (302,)


def test_budgets_change_sizes_only():
    _, quick = resolve("dc", "quick")
    _, paper = resolve("dc", "paper")
    assert paper.student_width is None and quick.student_width == 32
    assert DC.full_schedule(quick).steps == quick.full_steps
    assert DC.full_schedule(quick).milestones == (quick.full_steps // 2,)


def test_unknown_budget_and_protocol():
    with pytest.raises(UnknownNameError, match="did you mean 'quick'"):
        resolve("dc", "quik")
    with pytest.raises(UnknownNameError, match="unknown protocol 'dcc'"):
        resolve("dcc", "quick")
