"""Protocols as data: the DC schedule and the named budgets."""
import pytest

from core.errors import UnknownNameError
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


def test_idc_epochs_by_ipc_and_multistep_schedule():
    protocol, paper = resolve("idc", "paper")
    assert [protocol.epochs(paper, ipc) for ipc in (1, 10, 20, 50, 100)] == [2000, 2000, 1500, 1500, 1000]
    _, quick = resolve("idc", "quick")
    assert protocol.epochs(quick, 10) == 200
    sched = protocol.schedule(paper, 100, ipc=10)  # 100 images, batch 64: 2 steps per epoch
    assert sched.steps == 4000 and sched.milestones == (2666, 3332) and sched.gamma == 0.2
    assert sched.eval_every == 400  # ten validation scorings


def test_softlabel_and_dsa_are_data_not_flags():
    soft, budget = resolve("softlabel", "paper")
    assert (soft.optimizer, soft.lr_schedule, soft.labels, soft.temperature) == ("adamw", "cosine", "teacher", 20.0)
    assert budget.epochs == 300
    dsa, budget = resolve("dsa", "paper")
    assert dsa.augmentation == "dsa" and budget.epochs == 1000 and dsa.selection == "last"
