"""Periodic checkpoints of a training loop, so that preparation killed midway (a backbone trains
for minutes to hours) resumes where it stopped instead of starting again.

A loop names the objects that carry its state (models, optimiser, learning-rate schedule, random
generator, batch order); every `EVERY_S` seconds their state goes to the artifact cache (kind
``checkpoint``, safetensors like every record, never unpickled) under the key of what the loop
builds. A resumed loop continues from the saved step with the same random draws, so it ends with
the weights an uninterrupted run gives. The checkpoint is deleted when the loop finishes.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from core.artifacts import ArtifactCache

KIND = "checkpoint"
EVERY_S = 120.0


class Batches:
    """Index batches over ``n`` items, each epoch a new permutation from ``generator``: the same
    draws as ``torch.randperm(n).split(batch_size)`` epoch after epoch, with a state to resume from."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, drop_last: bool = False):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.end = n - n % batch_size if drop_last else n  # with drop_last a short remainder is skipped
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos >= self.end:
            self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
        batch = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


class GlobalRNG:
    """torch's global random state (dropout and initialisation draw from it) as a checkpoint part."""

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        return {"cpu": torch.get_rng_state(), "cuda": list(cuda)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["cpu"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _state(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, torch.optim.Optimizer):
        state = obj.state_dict()  # parameter indices as keys: strings in the file
        return {"state": {str(k): v for k, v in state["state"].items()}, "param_groups": state["param_groups"]}
    if hasattr(obj, "state_dict"):  # modules, schedules, batch orders, EMAs, loss memories
        return obj.state_dict()
    if dataclasses.is_dataclass(obj):  # a record of lists (a loss curve)
        return dataclasses.asdict(obj)
    return [t.detach().clone() for t in obj]  # a list of tensors (trained parameters): their values


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    elif isinstance(obj, torch.optim.Optimizer):
        obj.load_state_dict({"state": {int(k): v for k, v in state["state"].items()},
                             "param_groups": [dict(g) for g in state["param_groups"]]})
    elif hasattr(obj, "load_state_dict"):
        obj.load_state_dict(state)
    elif dataclasses.is_dataclass(obj):
        for name, value in state.items():
            setattr(obj, name, value)
    else:
        with torch.no_grad():
            for kept, saved in zip(obj, state, strict=True):
                kept.copy_(saved)


class LoopCheckpoint:
    """The checkpoints of one loop: ``resume`` before the first step, ``after_step`` after each,
    ``finish`` at the end. Without a cache it does nothing."""

    def __init__(self, cache: ArtifactCache | None, key: str, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.cache, self.key, self.every_s, self.clock = cache, key, every_s, clock
        self.last = clock()

    def resume(self, parts: dict[str, Any]) -> tuple[int, float]:
        """Restore ``parts`` in place from the checkpoint; (steps already done, last loss)."""
        saved = self.cache.load(KIND, self.key) if self.cache is not None else None
        if saved is None or set(saved["parts"]) != set(parts):
            return 0, float("nan")
        for name, obj in parts.items():
            _restore(obj, saved["parts"][name])
        return int(saved["step"]), float(saved["loss"])

    def after_step(self, step: int, loss: float, parts: dict[str, Any]) -> None:
        """Save the state after ``step`` steps if the last save is `every_s` old."""
        if self.cache is None or self.clock() - self.last < self.every_s:
            return
        self.cache.save(KIND, self.key, {"step": step, "loss": loss,
                                         "parts": {name: _state(obj) for name, obj in parts.items()}})
        self.last = self.clock()

    def finish(self) -> None:
        if self.cache is not None:
            self.cache.discard(KIND, self.key)
