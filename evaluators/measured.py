"""Choices made by measuring on the device: the policy names a user gives (`auto`, `always`,
`never`), the name a device's measurements are keyed by, and `measured_once`, which runs a
measurement the first time a (device, torch version, shape) is met and reads it from the
artifact cache (JSON numbers, never a pickle) every time after. Stacking students
(`evaluators.batching`) and compiling them (`evaluators.compiling`) both choose this way."""
from __future__ import annotations

import platform
from collections.abc import Callable

import torch

from core.artifacts import ArtifactCache, content_key

AUTO, ALWAYS, NEVER = "auto", "always", "never"
POLICIES = (AUTO, ALWAYS, NEVER)


def device_name(device: torch.device) -> str:
    """The device as its measurements are keyed: the GPU model, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return " ".join(part for part in ("cpu", platform.machine(), platform.processor(),
                                      f"x{torch.get_num_threads()} threads") if part)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_once(kind: str, config: dict, cache: ArtifactCache | None, measure: Callable[[], dict]) -> dict:
    """The record of the measurement ``config`` describes (device name, torch version, shape):
    from the cache under ``kind``, or made now by ``measure`` and cached. What ``measure`` raises
    is the caller's to turn into a choice."""
    key = content_key(config)
    record = cache.load(kind, key) if cache is not None else None
    if record is None:
        record = measure()
        if cache is not None:
            cache.save(kind, key, record, meta=config)
    return record
