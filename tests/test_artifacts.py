"""Tests for the content-addressed artifact cache."""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.artifacts import ArtifactCache, content_key, default_cache_root
from core.errors import BenchError

LOGGER = "core.artifacts"


def sample() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"images": torch.rand(10, 1, 28, 28, generator=g), "labels": torch.arange(10), "ipc": 1}


def test_roundtrip_dict_of_tensors(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    obj = sample()
    path = cache.save("distilled", "abc", obj, meta={"method": "random"})
    assert path == tmp_path / "cache" / "distilled" / "abc.safetensors" == cache.path("distilled", "abc")
    got = cache.load("distilled", "abc")
    assert torch.equal(got["images"], obj["images"]) and torch.equal(got["labels"], obj["labels"])
    assert got["ipc"] == 1
    meta = cache.meta("distilled", "abc")
    assert meta["meta"] == {"method": "random"}
    assert meta["bytes"] == path.stat().st_size
    assert len(meta["sha256"]) == 64 and meta["created_at"] > 0
    # no temp files left behind
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == [
        "abc.json", "abc.safetensors"]


def test_absent_is_none(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    assert cache.load("distilled", "missing") is None
    assert cache.meta("distilled", "missing") is None


def test_corrupted_file_detected_logged_deleted_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ArtifactCache(tmp_path)
    calls = []

    def build() -> dict:
        calls.append(1)
        return sample()

    first = cache.get_or_build("distilled", "k1", build)
    assert len(calls) == 1
    assert torch.equal(cache.get_or_build("distilled", "k1", build)["images"], first["images"])
    assert len(calls) == 1  # served from cache

    path = cache.path("distilled", "k1")
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 8] = bytes(b ^ 0xFF for b in raw[mid:mid + 8])
    path.write_bytes(bytes(raw))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load("distilled", "k1") is None
    assert str(path) in caplog.text and "rebuilt" in caplog.text and "sha256" in caplog.text
    assert not path.exists() and not path.with_suffix(".json").exists()

    again = cache.get_or_build("distilled", "k1", build)
    assert len(calls) == 2
    assert torch.equal(again["images"], first["images"])
    assert cache.load("distilled", "k1") is not None


def test_missing_sidecar_is_corrupted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ArtifactCache(tmp_path)
    path = cache.save("teacher", "t", {"w": torch.ones(3)})
    path.with_suffix(".json").unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load("teacher", "t") is None
    assert "sidecar is missing" in caplog.text and str(path) in caplog.text
    assert not path.exists()


def test_garbage_with_matching_checksum_is_not_unpickled_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A file whose checksum matches but which torch cannot read is treated as corrupted too.
    cache = ArtifactCache(tmp_path)
    path = cache.save("x", "k", [1, 2, 3])
    path.write_bytes(b"garbage")
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    sidecar.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load("x", "k") is None
    assert "cannot be read" in caplog.text and not path.exists()


def test_save_overwrites_same_key(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    cache.save("x", "k", {"v": 1})
    cache.save("x", "k", {"v": 2})
    assert cache.load("x", "k") == {"v": 2}


def test_build_failure_writes_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def boom() -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get_or_build("x", "k", boom)
    assert not cache.path("x", "k").exists()


def test_bad_kind_or_key_refused(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    for kind, key in (("../x", "k"), ("x", "a/b"), ("x", ".hidden"), ("", "k")):
        with pytest.raises(ValueError):
            cache.path(kind, key)


def test_content_key_stable_and_order_independent() -> None:
    a = content_key({"method": "d4m", "ipc": 10, "opts": {"strength": 0.5, "steps": 50}})
    b = content_key({"opts": {"steps": 50, "strength": 0.5}, "ipc": 10, "method": "d4m"})
    assert a == b and len(a) == 20 and all(c in "0123456789abcdef" for c in a)
    # canonical JSON: sorted keys, no spaces
    assert content_key({"b": 1, "a": [1, 2]}) == hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()[:20]
    assert content_key({"ipc": 10}) != content_key({"ipc": 50})


def test_unwritable_root_is_one_line_bench_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError) as info:
        ArtifactCache(blocker / "cache")
    msg = str(info.value)
    assert "\n" not in msg and "BENCH_CACHE" in msg and "--cache" in msg and str(blocker) in msg


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.delenv("BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "evlf-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "evlf-bench"


def test_concurrent_saves_and_loads_never_look_corrupted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ArtifactCache(tmp_path)
    cache.save("x", "k", {"v": torch.zeros(100)})
    failures: list[object] = []

    def writer(value: float) -> None:
        for _ in range(20):
            cache.save("x", "k", {"v": torch.full((100,), value)})

    def reader() -> None:
        for _ in range(40):
            got = cache.load("x", "k")
            if got is None or got["v"].unique().numel() != 1:
                failures.append(got)

    threads = [threading.Thread(target=writer, args=(float(i),)) for i in range(3)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == [] and "corrupted" not in caplog.text


def test_array_is_written_in_place_and_memory_mapped(tmp_path: Path) -> None:
    import numpy as np

    cache = ArtifactCache(tmp_path)
    expected = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    calls = []

    def fill(out: np.ndarray) -> None:
        calls.append(type(out))
        out[:2] = expected[:2]  # written a part at a time, as the encoder writes batches
        out[2:] = expected[2:]

    path = cache.write_array("hook-latents", "a1", (4, 2, 3), np.float32, fill, meta={"dataset": "d"})
    assert path == cache.path("hook-latents", "a1", ".npy") and calls == [np.memmap]
    got = cache.load_array("hook-latents", "a1")
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and np.array_equal(got, expected)
    got[0, 0, 0] = -1.0  # copy-on-write: the caller may write, the file never changes
    assert np.array_equal(cache.load_array("hook-latents", "a1"), expected)
    assert cache.meta("hook-latents", "a1")["bytes"] == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == ["a1.json", "a1.npy"]


def test_array_file_holding_objects_is_refused_not_unpickled(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """An attacker's .npy of Python objects with a matching checksum: loading never unpickles it."""
    import numpy as np

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    cache = ArtifactCache(tmp_path)
    path = cache.write_array("hook-latents", "evil", (1,), np.float32, lambda out: None)
    np.save(path, np.array([Payload()], dtype=object), allow_pickle=True)
    record = json.loads(path.with_suffix(".json").read_text())
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load_array("hook-latents", "evil") is None
    assert "Python objects" in caplog.text and not path.exists() and not marker.exists()


def test_truncated_array_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    cache = ArtifactCache(tmp_path)
    path = cache.write_array("hook-latents", "t", (8, 8), np.float32, lambda out: out.fill(1.0))
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load_array("hook-latents", "t") is None
    assert "sha256 does not match" in caplog.text and not path.exists()


def test_a_record_round_trips_through_safetensors_and_json(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    shared = torch.randn(3, 2)  # tied weights: two names, one tensor
    record = {"state_dict": {"a.weight": shared, "b.weight": shared, "steps": torch.tensor(7)},
              "images": torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8), "empty": torch.zeros(0, 4),
              "config": {"block_out_channels": (8, 16), "name": "x", "scale": 0.18215, "flag": True, "none": None},
              "curve": [1.5, float("nan"), 3], "nested": [{"t": torch.arange(3)}]}
    cache.save("backbone", "r", record)
    got = cache.load("backbone", "r")
    assert torch.equal(got["state_dict"]["a.weight"], shared) and torch.equal(got["state_dict"]["b.weight"], shared)
    assert got["images"].dtype == torch.uint8 and torch.equal(got["images"], record["images"])
    assert got["empty"].shape == (0, 4) and torch.equal(got["nested"][0]["t"], torch.arange(3))
    assert got["config"] == record["config"] and isinstance(got["config"]["block_out_channels"], tuple)
    assert got["curve"][0] == 1.5 and got["curve"][1] != got["curve"][1] and got["curve"][2] == 3


def test_a_planted_pickle_with_a_matching_checksum_never_runs(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """What an attacker with write access to a shared cache would plant: a pickle whose loading
    runs code, and a sidecar with its checksum. The cache never unpickles; the file is rebuilt."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    cache = ArtifactCache(tmp_path / "cache")
    path = cache.save("teacher", "t", {"w": torch.ones(3)})
    torch.save({"state_dict": Payload()}, path)
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load("teacher", "t") is None
    assert not marker.exists() and "cannot be read" in caplog.text and not path.exists()


def test_a_foreign_safetensors_file_is_not_taken_for_an_artifact(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    cache = ArtifactCache(tmp_path)
    path = cache.save("teacher", "t", {"w": torch.ones(3)})
    save_file({"w": torch.zeros(3)}, str(path))  # valid safetensors, but not written by the cache
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))
    assert cache.load("teacher", "t") is None


def test_files_get_the_permissions_of_the_users_umask(tmp_path: Path) -> None:
    import os

    from core.files import FILE_MODE

    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask  # not mkstemp's 0600: a group can share the cache
    cache = ArtifactCache(tmp_path)
    data = cache.save("teacher", "t", {"w": torch.ones(3)})
    array = cache.write_array("hook-latents", "a", (2,), "float32", lambda out: None)
    for path in (data, data.with_suffix(".json"), array):
        assert path.stat().st_mode & 0o777 == FILE_MODE


def test_an_older_harness_pickled_record_is_ignored_quietly_and_replaced(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    cache = ArtifactCache(tmp_path)
    legacy = cache.path("teacher", "t", ".pt")
    legacy.parent.mkdir(parents=True)
    torch.save({"w": torch.ones(3)}, legacy)
    legacy.with_suffix(".json").write_text(json.dumps({"sha256": hashlib.sha256(legacy.read_bytes()).hexdigest()}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert cache.load("teacher", "t") is None  # absent in this format: never unpickled
    assert caplog.text == "" and legacy.exists()
    cache.save("teacher", "t", {"w": torch.zeros(3)})
    assert not legacy.exists() and torch.equal(cache.load("teacher", "t")["w"], torch.zeros(3))


def test_a_file_from_another_cache_is_installed_only_if_it_arrives_intact(tmp_path):
    """What one node sends another (`benchmark.cluster.artifacts`) is verified against the sender's sha256."""
    sender, receiver = ArtifactCache(tmp_path / "a"), ArtifactCache(tmp_path / "b")
    sender.save("teacher", "k1", {"w": torch.arange(6.0)}, meta={"arch": "convnet3"})
    record = sender.verified("teacher", "k1")
    assert record is not None and sender.verified("teacher", "absent") is None
    payload = sender.path("teacher", "k1").read_bytes()
    with pytest.raises(ValueError, match="arrived damaged"):
        receiver.install("teacher", "k1", ".safetensors", record, lambda tmp: tmp.write_bytes(payload[:-1] + b"\0"))
    assert receiver.load("teacher", "k1") is None and not list((tmp_path / "b" / "teacher").glob("*.tmp"))
    receiver.install("teacher", "k1", ".safetensors", record, lambda tmp: tmp.write_bytes(payload))
    assert torch.equal(receiver.load("teacher", "k1")["w"], torch.arange(6.0))
    assert receiver.meta("teacher", "k1") == sender.meta("teacher", "k1")  # the sender's record, unchanged


def test_a_suffix_never_leads_out_of_the_cache(tmp_path):
    """The cache server takes kind, key and suffix from trials: none of them can name another path."""
    cache = ArtifactCache(tmp_path)
    for kind, key, suffix in (("teacher", "k", "/../../x"), ("teacher", "..", ".npy"), ("../t", "k", ".json")):
        with pytest.raises(ValueError, match="invalid artifact"):
            cache.path(kind, key, suffix)


def test_what_is_built_under_the_lock_records_its_seconds_and_a_plain_save_does_not(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def build() -> dict:
        time.sleep(0.2)
        return {"w": torch.zeros(2)}

    cache.get_or_build("teacher", "k1", build)
    assert 0.2 <= cache.meta("teacher", "k1")["build_s"] < 5
    with cache.building("hook-latents", "k2"):
        time.sleep(0.1)
        cache.write_array("hook-latents", "k2", (3,), np.float32, lambda out: None)
    assert cache.meta("hook-latents", "k2")["build_s"] >= 0.1
    cache.save("teacher", "k3", {"w": torch.zeros(2)})  # not built under the lock: nothing to time
    assert "build_s" not in cache.meta("teacher", "k3")
    cache.get_or_build("teacher", "k1", build)  # found: not rebuilt, the first figure stays
    assert 0.2 <= cache.meta("teacher", "k1")["build_s"] < 5
