"""Artifacts as safetensors files: the tensors of a nested record in the safetensors format and
everything else (dicts, lists, tuples, strings, numbers, booleans, None) as JSON in its
metadata. Reading one never unpickles anything, so a file planted in a shared cache can at
worst be wrong data, never code that runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

STRUCTURE = "evlf-bench/structure"  # the metadata key holding the record's JSON
TENSOR, TUPLE = "__tensor__", "__tuple__"  # markers in that JSON


def json_default(obj: Any) -> Any:
    """JSON for the values configs and metrics hold besides plain ones: paths, numpy and torch scalars."""
    # Only conversions that are stable across runs: a repr() fallback could embed memory addresses.
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    raise TypeError(f"cannot write a value of type {type(obj).__name__} as JSON: {obj!r}")


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        name = str(len(tensors))
        # a copy of its own: safetensors refuses tensors that share memory (tied weights)
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {TENSOR: name}
    if isinstance(value, dict):
        if any(not isinstance(k, str) or k in (TENSOR, TUPLE) for k in value):
            raise TypeError(f"cannot store a dict with keys {list(value)[:5]}: keys must be strings")
        return {k: _encode(v, tensors) for k, v in value.items()}
    if isinstance(value, tuple):
        return {TUPLE: [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json_default(value)


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            return tensors[value[TENSOR]]
        if set(value) == {TUPLE}:
            return tuple(_decode(v, tensors) for v in value[TUPLE])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def write(path: Path, record: Any) -> None:
    """Write ``record`` (a nest of dicts, lists and tuples with tensors and JSON values) to ``path``."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(record, tensors)
    save_file(tensors, str(path), metadata={STRUCTURE: json.dumps(structure)})


def read(path: Path) -> Any:
    """The record written by :func:`write`, tensors on the CPU; raises ValueError on a foreign file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        if STRUCTURE not in metadata:
            raise ValueError("not an evlf-bench artifact (no structure in its metadata)")
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    return _decode(json.loads(metadata[STRUCTURE]), tensors)
