"""Whether a student's training step runs through `torch.compile`, per device and shape.

On the 2-core development CPU the compiled ConvNet-3 step (fused instance norm, ReLU and
pooling kernels in forward and backward) measured 1.9x the eager one (width 32, batch 256, one
thread; whole evaluations 1.25x to 1.36x), but a first compilation costs 8 to 30 seconds per
process and shape. So the harness
compiles only a training long enough to repay it (`MIN_WORK` images seen), and only where a
measurement on this device found the compiled step faster: the first such training times a few
steps both ways (on random inputs of its shape) and caches the figures, as
`evaluators.batching` does for stacking. Every row records the choice (`CompileChoice.metrics`).

Compiled code is reused by every later student of the same architecture and shape in the
process (new instances included). Inductor's pickled graph caches are turned off (nothing read
from a cache is unpickled); its compiled kernels go to a private directory of this user
(`inductor_dir`), never to a shared temporary folder.
"""
from __future__ import annotations

import os
import stat
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from core.artifacts import ArtifactCache
from core.archs import StudentShape, build_student
from evaluators.measured import ALWAYS, AUTO, POLICIES, device_name, measured_once, synchronize

COMPILING = POLICIES  # auto, always, never: a user's policy (`--compile`)
MIN_WORK = 25_000  # images seen in training (steps x batch) below which a student is never compiled
MEASURED_STEPS = 5
KIND = "student-compiling"
RECOMPILE_LIMIT = 64  # compiled shapes per student architecture in one process


@dataclass(frozen=True)
class CompileChoice:
    """Whether a student's training step was compiled, and why."""

    compiled: bool
    device: str
    reason: str
    eager_ms_per_step: float | None = None
    compiled_ms_per_step: float | None = None
    compile_s: float | None = None  # the measurement's first compiled step: a compilation, unless this
    # process already compiled a student of the same shape (Dynamo reuses that graph)

    def metrics(self) -> dict:
        return {"student_compiled" if k == "compiled" else f"student_compile_{k}": v for k, v in asdict(self).items()}


def inductor_dir() -> Path:
    """A directory only this user can write, for Inductor's compiled kernels (it loads them as
    code): ``$XDG_CACHE_HOME/evlf-bench-inductor`` (default ``~/.cache/...``) when it is ours and
    private, else a fresh temporary directory."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    path = (Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache") / "evlf-bench-inductor"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="evlf-bench-inductor-"))


def configure_inductor() -> None:
    """Before the first compilation: kernels to `inductor_dir`, no pickled graph caches, and
    room for every shape a long-lived worker meets (past Dynamo's default of 8 per function it
    would fall back to eager steps while the row says compiled)."""
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # importing Inductor (here or in any earlier import) writes its shared default into the
    # environment: only a folder the user chose is kept
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_dir())
    inductor_config.fx_graph_cache = False
    inductor_config.fx_graph_remote_cache = False
    functorch_config.enable_autograd_cache = False
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` compiled for training steps of fixed shapes (an epoch's short last batch is a
    second shape); it shares the weights, so training it trains ``model``."""
    configure_inductor()
    return torch.compile(model, dynamic=False)


def measure(arch: str, shape: StudentShape, width: int | None, batch_size: int, device: torch.device,
            steps: int = MEASURED_STEPS) -> tuple[float, float, float]:
    """(eager ms, compiled ms per training step, seconds of the first compiled step) on random
    inputs of the student's shape."""
    torch.manual_seed(0)
    model = build_student(arch, shape, width=width).to(device)
    x = torch.randn(batch_size, shape.channels, shape.image_size, shape.image_size, device=device)
    y = torch.randint(shape.num_classes, (batch_size,), device=device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fast = compiled(model)

    def step(forward: torch.nn.Module) -> None:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), y).backward()
        optimiser.step()

    start = time.perf_counter()
    step(fast)
    synchronize(device)
    compile_s = time.perf_counter() - start
    step(model)
    timings = []
    for forward in (model, fast):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step(forward)
        synchronize(device)
        timings.append(1000 * (time.perf_counter() - start) / steps)
    return timings[0], timings[1], compile_s


def choose(arch: str, shape: StudentShape, width: int | None, batch_size: int, steps: int,
           device: torch.device, cache: ArtifactCache | None, policy: str = AUTO) -> CompileChoice:
    """Compiled when (``policy`` auto) the training sees at least `MIN_WORK` images and the
    compiled step measured faster on this device (measured once per device, torch version and
    shape, and cached); ``policy`` always or never is the user's (`--compile`)."""
    if policy not in COMPILING:
        raise ValueError(f"compile policy must be one of {', '.join(COMPILING)}, got '{policy}'")
    name = device_name(device)
    if policy != AUTO:
        return CompileChoice(policy == ALWAYS, name, f"--compile {policy}")
    work = steps * batch_size
    if work < MIN_WORK:
        return CompileChoice(False, name, f"too short to repay a compilation ({work:,} images seen)")
    config = {"device": name, "torch": torch.__version__, "arch": arch, "shape": asdict(shape), "width": width,
              "batch_size": batch_size, "steps": MEASURED_STEPS}
    try:
        record = measured_once(KIND, config, cache, lambda: dict(zip(
            ("eager_ms", "compiled_ms", "compile_s"), measure(arch, shape, width, batch_size, device))))
    except Exception as exc:  # no compiler on this machine, out of memory, ...: stay eager
        return CompileChoice(False, name, f"compiling failed here: {str(exc).strip().splitlines()[0][:200]}")
    eager_ms, compiled_ms = float(record["eager_ms"]), float(record["compiled_ms"])
    reason = f"measured on this device: {compiled_ms:.1f} ms compiled, {eager_ms:.1f} ms eager per step"
    return CompileChoice(compiled_ms < eager_ms, name, reason, round(eager_ms, 3), round(compiled_ms, 3),
                         round(float(record["compile_s"]), 3))

