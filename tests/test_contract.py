"""The shared records: what a distilled set must be before a student trains on it, how an
external file is read, and how result rows are built (one place, ok or error)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.sets.external import load_external
from core.datasets import load_dataset
from core.distilled import DistilledSet, check_distilled
from core.errors import BenchError
from core.rows import ResultRow
from core.runs import RunSpec


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _set(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return values, torch.arange(10).repeat_interleave(2)


def test_values_outside_zero_one_are_refused_with_the_range_found(digits):
    check_distilled(*_set(torch.rand(20, 1, 8, 8)), digits)
    with pytest.raises(BenchError, match=r"must lie in \[0, 1\] \(got -0.5 to 0.9"):
        check_distilled(*_set(torch.full((20, 1, 8, 8), 0.9).index_fill_(0, torch.tensor([3]), -0.5)), digits)
    with pytest.raises(BenchError, match=r"got 0 to 255"):
        check_distilled(*_set(torch.zeros(20, 1, 8, 8).index_fill_(0, torch.tensor([0]), 255.0)), digits)


def test_an_external_file_with_soft_labels_is_refused_in_one_line(digits, tmp_path, capsys):
    path = tmp_path / "soft.pt"
    images, labels = _set(torch.rand(20, 1, 8, 8))
    torch.save({"images": images, "labels": labels, "soft_labels": torch.rand(20, 10)}, path)
    with pytest.raises(BenchError, match="soft_labels.*no protocol"):
        load_external(path, digits, trust_pickle=True)
    assert main(["eval", "--data", str(path), "--dataset", "digits", "--budget", "smoke", "--trust-pickle",
                 "--store", str(tmp_path / "s"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "soft_labels" in err and "\n" not in err
    torch.save({"images": images, "labels": labels}, path)
    dset, ipc = load_external(path, digits, trust_pickle=True)
    assert ipc == 2 and dset.nbytes == 20 * 64 + 20 * 8  # a byte per pixel value, int64 labels


def test_an_image_folder_set_is_read_in_zero_one(digits, tmp_path):
    from PIL import Image

    for c in range(10):
        (tmp_path / str(c)).mkdir()
        Image.fromarray(np.full((8, 8), 255 * (c % 2), dtype=np.uint8)).save(tmp_path / str(c) / "a.png")
    dset, ipc = load_external(tmp_path, digits)
    assert ipc == 1 and float(dset.images.min()) == 0.0 and float(dset.images.max()) == 1.0


def _run() -> RunSpec:
    return RunSpec(method="random", method_config='{"method": "random"}', dataset="digits", data_fingerprint="fp",
                   ipc=2, arch="convnet3", protocol="dc", protocol_config="{}", budget="smoke", seed=1)


def test_result_rows_are_built_from_the_run_spec():
    run = _run()
    ok = ResultRow.ok(run, 51.5, {"final_loss": np.float32(0.25), "images": torch.tensor(20)})
    assert (ok.run_hash, ok.status, ok.method, ok.ipc, ok.seed, ok.test_acc) == (run.run_hash, "ok", "random", 2, 1, 51.5)
    assert ok.metrics == {"final_loss": 0.25, "images": 20} and ok.config == run.config()  # plain JSON values
    failed = ResultRow.error(run, "RuntimeError: boom")
    assert (failed.status, failed.test_acc, failed.error, failed.config["method"]) == ("error", None,
                                                                                       "RuntimeError: boom", "random")
    assert failed.label() == run.label() == "random digits ipc2 convnet3 seed1"
    stamped = failed.stamped("abc", {"torch": "2"}, 5.0)
    assert (stamped.git_commit, stamped.created_at, failed.git_commit) == ("abc", 5.0, "")
    assert ResultRow.from_json(ok.to_json()) == ok
    with pytest.raises(ValueError, match="status"):
        ResultRow(**{**ok.to_json(), "status": "done"})


def test_a_distilled_set_round_trips_through_its_state():
    dset = DistilledSet(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), meta={"seed": 3})
    back = DistilledSet.from_state(dset.to_state())
    assert torch.equal(back.images, dset.images) and torch.equal(back.labels, dset.labels) and back.meta == dset.meta
    with pytest.raises(ValueError):
        DistilledSet(torch.rand(4, 8, 8), torch.tensor([0, 1, 2, 3]))
