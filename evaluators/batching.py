"""Whether a cell's students train stacked (`evaluators.batched`) or one by one, per device.

The answer is measured, not assumed: on a 2-core CPU stacking three ConvNets was measured
slower than training them in turn, while a GPU left almost idle by one tiny student is the case
stacking was made for. The first cell of a kind on a device times a few training steps both
ways on inputs of the cell's shape and keeps the faster; the timing is cached (JSON numbers in
the artifact cache, keyed by the device's name, the torch version and the cell's shape), so a
device measures each kind once. Every row records the choice (`BatchingChoice.metrics`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from core.artifacts import ArtifactCache
from core.archs import StudentShape, build_student
from evaluators.measured import ALWAYS, AUTO, POLICIES, device_name, measured_once, synchronize

# The architectures whose stacked students equal separate ones within float tolerance
# (tests/test_batched_students.py). timm's ResNet-18 is not among them: on some batches its
# stacked gradients were measured up to 1 % away from separate training's (its instance norms on
# full-resolution maps are ill-conditioned: even float32 alone is 0.06 % from float64 there), so
# its students always train one by one.
BATCHABLE_ARCHS = frozenset({"convnet3", "convnet3-w32", "convnet6", "resnetap10"})
BATCHED, SEPARATE = "batched", "separate"
STACKING = POLICIES  # a user's stacking policy (`--stack-students`)
MEASURED_STEPS = 5
KIND = "student-batching"


@dataclass(frozen=True)
class BatchingChoice:
    """How a cell's students were trained, and why."""

    mode: str  # BATCHED or SEPARATE
    students: int
    device: str
    reason: str
    separate_ms_per_step: float | None = None  # all students, one training step each
    batched_ms_per_step: float | None = None

    def metrics(self) -> dict:
        return {f"student_batching_{k}" if k != "mode" else "student_batching": v for k, v in asdict(self).items()}


def measure(arch: str, shape: StudentShape, width: int | None, batch_size: int, students: int,
            device: torch.device, steps: int = MEASURED_STEPS) -> tuple[float, float]:
    """Milliseconds per training step of ``students`` students (each a step on its own batch),
    one by one and stacked, on random inputs of the cell's shape (after one untimed step each)."""
    from evaluators.batched import StackedStudents

    models = [build_student(arch, shape, width=width).to(device) for _ in range(students)]
    x = torch.randn(students, batch_size, shape.channels, shape.image_size, shape.image_size, device=device)
    y = torch.randint(shape.num_classes, (students, batch_size), device=device)

    def separate() -> None:
        for m, opt, xi, yi in zip(models, optimisers, x, y):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(xi), yi).backward()
            opt.step()

    def stacked() -> None:
        stack_opt.zero_grad(set_to_none=True)
        out = stack.forward(x)
        F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="sum").backward()
        stack_opt.step()

    optimisers = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in models]
    stack = StackedStudents(models)
    stack_opt = torch.optim.SGD(stack.params.values(), lr=0.01, momentum=0.9)
    timings = []
    for step in (separate, stacked):
        step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        timings.append(1000 * (time.perf_counter() - start) / steps)
    return timings[0], timings[1]


def choose(arch: str, shape: StudentShape, width: int | None, batch_size: int, students: int,
           device: torch.device, cache: ArtifactCache | None, policy: str = AUTO) -> BatchingChoice:
    """Stacked when the architecture allows it and (``policy`` auto) it measures faster on this
    device; the measurement is made once per (device, torch version, shape) and cached.
    ``policy`` always or never is the user's choice (`bench run --stack-students`)."""
    if policy not in STACKING:
        raise ValueError(f"stacking policy must be one of {', '.join(STACKING)}, got '{policy}'")
    name = device_name(device)
    if students < 2:
        return BatchingChoice(SEPARATE, students, name, "one student")
    if arch not in BATCHABLE_ARCHS:
        return BatchingChoice(SEPARATE, students, name, f"{arch} is not stacked (see evaluators.batching)")
    if policy != AUTO:
        return BatchingChoice(BATCHED if policy == ALWAYS else SEPARATE, students, name,
                              f"--stack-students {policy}")
    config = {"device": name, "torch": torch.__version__, "arch": arch, "shape": asdict(shape), "width": width,
              "batch_size": batch_size, "students": students, "steps": MEASURED_STEPS}
    try:
        record = measured_once(KIND, config, cache, lambda: dict(zip(
            ("separate_ms", "batched_ms"), measure(arch, shape, width, batch_size, students, device))))
    except RuntimeError as exc:  # out of device memory, above all: the students train one by one
        return BatchingChoice(SEPARATE, students, name, f"stacking failed here: {str(exc).splitlines()[0]}")
    separate_ms, batched_ms = float(record["separate_ms"]), float(record["batched_ms"])
    faster = BATCHED if batched_ms < separate_ms else SEPARATE
    reason = f"measured on this device: {batched_ms:.1f} ms stacked, {separate_ms:.1f} ms one by one per step"
    return BatchingChoice(faster, students, name, reason, round(separate_ms, 3), round(batched_ms, 3))
