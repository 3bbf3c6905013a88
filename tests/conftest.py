"""Shared test fixtures: isolated store/cache directories and Ray kept on loopback."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def bench_env(tmp_path, monkeypatch):
    """Point the result store and the artifact cache at fresh temporary directories."""
    store, cache = tmp_path / "store", tmp_path / "cache"
    monkeypatch.setenv("BENCH_STORE", str(store))
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    return store, cache
