"""The rows of the end-to-end smoke grids as recorded before a refactor, to prove it changed no
result: the same run hashes, distilled-set keys and accuracies.

``BENCH_UPDATE_GOLDEN=1`` rewrites the record instead of comparing (only for a change that is
meant to alter results, stated in its commit). Accuracies are compared exactly on a CPU with
the capability the record was made on (one thread per trial, so the arithmetic is the same);
elsewhere the float order of the kernels differs, and they are compared within 5 points.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RECORD = Path(__file__).parent / "data" / "smoke_rows.json"
FIELDS = ("method", "ipc", "seed", "arch", "test_acc")
# the final training loss and the teacher-space metrics move with any change to the images
METRICS = ("distill_key", "images", "bytes", "test_acc_last", "final_loss", "recognizability", "fd_teacher",
           "diversity")

FLOATS = ("test_acc", "test_acc_last", "final_loss", "recognizability", "fd_teacher", "diversity")


def _capability() -> str:
    import torch

    return f"{torch.backends.cpu.get_cpu_capability()} torch {torch.__version__.split('+')[0]}"


def _summary(rows: list[dict]) -> dict[str, dict]:
    return {r["run_hash"]: {**{k: r.get(k) for k in FIELDS}, **{k: r["metrics"].get(k) for k in METRICS}}
            for r in rows}


def check_golden(name: str, rows: list[dict]) -> None:
    """Assert that ``rows`` (from ``bench results --json``) equal the recorded grid ``name``."""
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    got = _summary(rows)
    if os.environ.get("BENCH_UPDATE_GOLDEN") == "1":
        record["capability"] = _capability()
        record[name] = got
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        return
    expected = record[name]
    assert sorted(got) == sorted(expected), "run hashes changed"
    exact = record["capability"] == _capability()
    for run_hash, want in expected.items():
        have = got[run_hash]
        for key, value in want.items():
            if key in FLOATS and not exact and value is not None:
                assert have[key] == pytest.approx(value, rel=0.05, abs=5.0), (run_hash, key)
            else:
                assert have[key] == value, (run_hash, want["method"], key)
