"""Protocols as data: the DC schedule and the named budgets."""
import pytest

from core.errors import UnknownNameError
from evaluators.protocols import DC, resolve


def test_dc_paper_schedule_matches_the_dc_code():
    protocol, budget = resolve("dc", "paper")
    assert (protocol.lr, protocol.momentum, protocol.weight_decay, protocol.batch_size) == (0.01, 0.9, 5e-4, 256)
    # IPC 10 on 10 classes: 100 images, one batch per epoch; E + 1 = 301 epochs (`for ep in
    # range(Epoch+1)`); the DC code decays once the epoch with index Epoch//2+1 = 151 is done,
    # i.e. after 152 epochs, by building a new optimiser (momentum restarts)
    sched = protocol.schedule(budget, 100)
    assert sched.steps == 301 and sched.milestones == (152,) and sched.gamma == 0.1 and sched.reset_momentum
    # IPC 50: 500 images, two batches per epoch
    sched = protocol.schedule(budget, 500)
    assert sched.steps == 602 and sched.milestones == (304,)


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
    # IDC's `ipc_epoch` (argument.py): 3000 at IPC 1, 2000 up to 10, 1500 up to 50, 1000 up to
    # 200, 500 up to 500, 300 above; on 100 classes two thirds, rounded down to hundreds
    ipcs = (1, 2, 10, 20, 50, 100, 200, 300, 500, 1000)
    assert [protocol.epochs(paper, ipc) for ipc in ipcs] == [3000, 2000, 2000, 1500, 1500, 1000, 1000, 500, 500, 300]
    assert [protocol.epochs(paper, ipc, num_classes=100) for ipc in (1, 10, 50, 200)] == [2000, 1300, 1000, 600]
    assert protocol.epochs(paper, 10, num_classes=10) == 2000
    _, quick = resolve("idc", "quick")
    assert protocol.epochs(quick, 10) == 200 and protocol.epochs(quick, 1) == 300
    sched = protocol.schedule(paper, 100, ipc=10)  # 100 images, batch 64: 2 steps per epoch
    # MultiStepLR at 2 * E // 3 and 5 * E // 6 epochs (train.py)
    assert sched.steps == 4000 and sched.milestones == (2666, 3332) and sched.gamma == 0.2
    assert not sched.reset_momentum
    assert sched.eval_every == 40  # IDC scores every E // 100 epochs: 100 scorings
    # integer decay points: 150 epochs decay after 100 and 125 (2/3 as a float gives 99.99...)
    sched = resolve("idc", "quick")[0].schedule(quick, 10, ipc=50)
    assert protocol.epochs(quick, 50) == 150 and sched.milestones == (100, 125)


def test_softlabel_and_dsa_are_data_not_flags():
    soft, budget = resolve("softlabel", "paper")
    assert (soft.optimizer, soft.lr_schedule, soft.labels, soft.temperature) == ("adamw", "cosine", "teacher", 20.0)
    assert budget.epochs == 300
    dsa, budget = resolve("dsa", "paper")
    assert dsa.augmentation == "dsa" and budget.epochs == 1000 and dsa.selection == "last"


def test_dc_decay_equals_the_dc_codes_new_optimiser():
    # The DC code's evaluate_synset: SGD; after the epoch with index Epoch//2+1 the rate is
    # multiplied by 0.1 and a new SGD is built (momentum buffers gone). Written out by hand here
    # and compared with the harness's loop on the same batches.
    import torch
    from torch.nn import functional as F

    from core.archs import StudentShape, build_student
    from evaluators.train import train

    protocol, budget = resolve("dc", "smoke")
    budget = type(budget)("t", epochs=6, full_steps=1, seeds=1, student_width=4)
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    schedule = protocol.schedule(budget, 20)
    assert schedule.steps == 7 and schedule.milestones == (5,)

    torch.manual_seed(0)
    harness = build_student("convnet3", StudentShape(1, 8, 10), width=4)
    by_hand = build_student("convnet3", StudentShape(1, 8, 10), width=4)
    by_hand.load_state_dict(harness.state_dict())
    train(harness, x, y, protocol, schedule, seed=3)

    g, lr = torch.Generator().manual_seed(3), protocol.lr
    opt = torch.optim.SGD(by_hand.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    by_hand.train()
    for ep in range(budget.epochs + 1):
        idx = torch.randperm(20, generator=g)  # one batch per epoch (batch 256)
        loss = F.cross_entropy(by_hand(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ep == budget.epochs // 2 + 1:
            lr *= 0.1
            opt = torch.optim.SGD(by_hand.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for (name, a), b in zip(harness.state_dict().items(), by_hand.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
