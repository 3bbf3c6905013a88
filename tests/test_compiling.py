"""Compiled student steps (issue 16, item 2): equal to eager training within float tolerance,
chosen by a cached measurement, with no pickled compiler caches and a private kernel folder."""
import dataclasses
import os

import pytest
import torch

from core.artifacts import ArtifactCache
from evaluators import compiling
from core.archs import StudentShape, build_student
from core.augment import Standardisation
from evaluators.protocols import resolve
from evaluators.train import Validation, train

SHAPE = StudentShape(1, 16, 10)
STATS = Standardisation((0.5,), (0.25,))


def _student(seed: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_student("convnet3", SHAPE, width=8)


def test_a_compiled_student_ends_where_an_eager_one_ends():
    # dc: DSA augmentation, SGD with a momentum reset at the milestone, validation selection;
    # 40 images in batches of 16: the epoch's short last batch is a second compiled shape
    protocol, budget = resolve("dc", "smoke")
    schedule = dataclasses.replace(protocol.schedule(budget, 40), steps=7, batch_size=16, eval_every=3,
                                   milestones=(4,))
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(40, 1, 16, 16, generator=g), torch.arange(40) % 10
    val = Validation(torch.randn(30, 1, 16, 16, generator=g), torch.arange(30) % 10)
    eager, fast = _student(), _student()
    one = train(eager, x, y, protocol, schedule, 3, validation=val, standardisation=STATS)
    two = train(fast, x, y, protocol, schedule, 3, validation=val, standardisation=STATS,
                forward=compiling.compiled(fast))
    for (name, a), b in zip(eager.state_dict().items(), fast.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), name
    assert one.selected_step == two.selected_step and one.val_acc == pytest.approx(two.val_acc)
    assert one.final_loss == pytest.approx(two.final_loss, rel=1e-4)
    # the weights moved: a compiled wrapper that trained a copy would leave `fast` at its initialisation
    assert not torch.allclose(_student().state_dict()["features.0.weight"], fast.state_dict()["features.0.weight"])


def test_the_choice_is_measured_once_per_shape_and_cached(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    cpu = torch.device("cpu")
    short = compiling.choose("convnet3", SHAPE, 8, 16, 100, cpu, cache)
    assert not short.compiled and "too short" in short.reason
    assert not (tmp_path / "cache" / compiling.KIND).exists()  # nothing measured for it
    assert compiling.choose("convnet3", SHAPE, 8, 16, 10, cpu, cache, "always").compiled
    assert not compiling.choose("convnet3", SHAPE, 8, 16, 10_000, cpu, cache, "never").compiled
    # width 6, batch 12: a shape no other test compiles, so the first compiled step really compiles
    # (Dynamo reuses a graph compiled earlier in the process for another student of the same shape)
    first = compiling.choose("convnet3", SHAPE, 6, 12, 10_000, cpu, cache)
    assert first.eager_ms_per_step > 0 and first.compiled_ms_per_step > 0
    assert first.compile_s > first.compiled_ms_per_step / 1000  # a compilation, not only a step
    assert first.compiled == (first.compiled_ms_per_step < first.eager_ms_per_step)
    assert len(list((tmp_path / "cache" / compiling.KIND).glob("*.safetensors"))) == 1
    again = compiling.choose("convnet3", SHAPE, 6, 12, 20_000, cpu, cache)
    assert again == first  # read back, not measured again (a new timing would differ)
    assert first.metrics()["student_compiled"] == first.compiled
    assert first.metrics()["student_compile_reason"].startswith("measured on this device")
    with pytest.raises(ValueError, match="compile policy"):
        compiling.choose("convnet3", SHAPE, 8, 16, 10_000, cpu, cache, "sometimes")


def test_no_pickled_compiler_cache_is_read(tmp_path, monkeypatch):
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    compiling.configure_inductor()
    assert not inductor_config.fx_graph_cache and not inductor_config.fx_graph_remote_cache
    assert not functorch_config.enable_autograd_cache


def test_compiled_kernels_land_in_the_private_folder_not_the_shared_default(tmp_path):
    # in a fresh process that imports Inductor first (as a worker that imported the methods
    # does): its shared /tmp default must not stay in force
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path)}
    code = ("import torch._inductor.config, torch\n"
            "from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir\n"
            "from evaluators import compiling\n"
            "f = compiling.compiled(torch.nn.Linear(3, 2))\n"
            "f(torch.randn(4, 3)).sum().backward()\n"
            "print(cache_dir()); print(default_cache_dir())\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    used, default = out.stdout.split()[-2:]
    private = tmp_path / "evlf-bench-inductor"
    assert used == str(private) != default
    assert any(p.is_file() for p in private.rglob("*"))  # the kernels were written there


def test_kernels_go_to_a_private_folder_of_this_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    own = compiling.inductor_dir()
    assert own == tmp_path / "evlf-bench-inductor" and own.stat().st_mode & 0o777 == 0o700
    # a folder others can write (planted, or made with a loose umask) is not used: a fresh private one is
    own.chmod(0o777)
    other = compiling.inductor_dir()
    assert other != own and other.stat().st_mode & 0o077 == 0 and other.stat().st_uid == os.geteuid()
    # nor a link to somewhere else
    own.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    own.symlink_to(tmp_path / "elsewhere")
    assert compiling.inductor_dir() not in (own, tmp_path / "elsewhere")


def test_training_steps_go_through_the_given_forward():
    class Counting(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model, self.calls = model, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.model(x)

    protocol, budget = resolve("dc", "smoke")
    schedule = dataclasses.replace(protocol.schedule(budget, 20), steps=5, batch_size=8, eval_every=0, milestones=())
    student = _student()
    counting = Counting(student)
    train(student, torch.randn(20, 1, 16, 16), torch.arange(20) % 10, protocol, schedule, 0, standardisation=STATS,
          forward=counting)
    assert counting.calls == 5


def test_only_trainings_that_repay_a_compilation_are_candidates(tmp_path):
    # dc/quick on Fashion-MNIST: IPC 1 (10 images a step) is never compiled, IPC 10 and 50 may be
    protocol, budget = resolve("dc", "quick")
    shape = StudentShape(1, 28, 10)
    work = {}
    for ipc in (1, 10, 50):
        schedule = protocol.schedule(budget, 10 * ipc, ipc, 10)
        work[ipc] = schedule.steps * schedule.images_per_step(10 * ipc)
    assert work[1] < compiling.MIN_WORK <= work[10] < work[50]
    schedule = protocol.schedule(budget, 10, 1, 10)
    choice = compiling.choose("convnet3", shape, budget.student_width, schedule.images_per_step(10), schedule.steps,
                              torch.device("cpu"), ArtifactCache(tmp_path))
    assert not choice.compiled and "too short" in choice.reason


def test_a_worker_keeps_compiling_past_dynamos_default_of_eight_shapes():
    # a Ray worker serves trial after trial: batch sizes, widths and set sizes add up
    import torch._dynamo.config as dynamo_config

    compiling.configure_inductor()
    assert dynamo_config.recompile_limit >= compiling.RECOMPILE_LIMIT > 8
