"""Artifacts across the nodes of a Ray cluster that share no disk.

The driver's cache is the one place of record. When `bench run` joins a cluster, it starts a
`CacheServer` actor pinned to the driver's own node, reading and writing the driver's cache. A
trial on that node uses the driver's cache directly; a trial on any other node works in its
node's own cache (``BENCH_CACHE`` of that node, else the default), where a `NodeCache`:

- fetches, on a miss, what the driver built before the trials (teachers, backbones, fine-tuned
  denoisers, plug-in modules) through Ray's object store, checked against the sender's sha256;
- sends every record it saves (the distilled set above all) back to the driver's cache, so
  `bench eval`, `bench export` and the sample grids of the leaderboard find it there;
- receives the data set itself as the driver loaded it (`core.datasets.bundle`), so a node
  needs neither the data nor the same paths; the trial checks its fingerprint against the plan.

Nothing crosses as a pickle of harness objects: files travel as bytes with their sidecar record,
and are verified on arrival like any file of the cache.
"""
from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.artifacts import RECORD, ArtifactCache, default_cache_root
from core.datasets import Dataset, load_dataset
from core.datasets import bundle
from core.errors import BenchError
from methods.checkpoint import KIND as CHECKPOINT_KIND

# What a node saves that stays on it: a training loop's checkpoints are of use only where it runs.
NODE_KINDS = frozenset({CHECKPOINT_KIND})
CHUNK = 32 << 20  # bytes per object-store transfer: a large model never crosses as one object
SERVER_NAME = "evlf-bench-cache-{}"  # one per driver process
NAMESPACE = "evlf-bench"  # Ray namespace of the server, where trials look it up


class CacheServer:
    """Serves the driver's cache to the other nodes (run as a Ray actor on the driver's node)."""

    def __init__(self, root: str):
        self.cache = ArtifactCache(root)

    def record(self, kind: str, key: str, suffix: str) -> dict | None:
        return self.cache.verified(kind, key, suffix)

    def read(self, kind: str, key: str, suffix: str, offset: int, length: int) -> bytes:
        with open(self.cache.path(kind, key, suffix), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def receive(self, kind: str, key: str, suffix: str, record: dict, chunks: list) -> None:
        import ray

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                for ref in chunks:  # one chunk in memory at a time
                    f.write(ray.get(ref))

        self.cache.install(kind, key, suffix, record, write)

    def bundle_dataset(self, spec: str, fingerprint: str) -> str | None:
        """Make the data set available as a bundle keyed by ``fingerprint``; an error line if the
        driver's own copy is not that data."""
        if self.cache.verified(bundle.KIND, fingerprint) is not None:
            return None
        try:
            data = load_dataset(spec)
        except BenchError as exc:
            return f"the driver cannot load {spec}: {exc}"
        if data.fingerprint() != fingerprint:
            return (f"the driver's copy of {spec} is not the planned data (fingerprint {data.fingerprint()}, "
                    f"planned {fingerprint}); it changed after the plan")
        self.cache.save(bundle.KIND, fingerprint, bundle.to_record(data), meta={"dataset": spec})
        return None


@contextlib.contextmanager
def trial_places(cache: ArtifactCache, scratch_name: str, shared_storage: bool, cluster: bool) -> Iterator[dict]:
    """What every trial of this driver is told about where it runs (`TrialPlace.from_config`), with
    what that needs kept alive meanwhile: on shared storage a probe file in it, which tells a node
    that does not see the directory; on a cluster that may hold other machines, the cache server
    through which their trials reach this cache. Ray is running."""
    import ray

    place: dict[str, Any] = {"cache_root": str(cache.root)}
    probe = cache.root / (scratch_name + ".probe")
    try:
        if shared_storage:
            probe.write_text("the driver of a bench run on shared storage\n")
            place["storage_probe"] = probe.name
        elif cluster:
            place["cache_server"] = SERVER_NAME.format(os.getpid())
            place["driver_node"] = ray.get_runtime_context().get_node_id()
            server = start_server(str(cache.root), place["cache_server"])  # noqa: F841 (alive while held)
        yield place
    finally:
        if shared_storage:
            probe.unlink(missing_ok=True)


def start_server(cache_root: str, name: str) -> Any:
    """Start the `CacheServer` on this driver's node (no CPU reserved: it only moves bytes)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    actor = ray.remote(CacheServer).options(
        name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=8, lifetime=None,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
        # the server loads data sets as the driver would: with the driver's cache for decoded folders
        runtime_env={"env_vars": {"BENCH_CACHE": str(cache_root)}},
    ).remote(cache_root)
    ray.get(actor.record.remote("none", "none", RECORD))  # started and answering
    return actor


class NodeCache(ArtifactCache):
    """A node's own cache that fetches what it lacks from the driver and sends back what it saves."""

    def __init__(self, root: str | Path, server: Any):
        super().__init__(root)
        self.server = server

    def _load(self, kind, key, suffix, read):  # type: ignore[override]
        found = super()._load(kind, key, suffix, read)
        if found is None and self._fetch(kind, key, suffix):
            found = super()._load(kind, key, suffix, read)
        return found

    def _fetch(self, kind: str, key: str, suffix: str) -> bool:
        import ray

        record = ray.get(self.server.record.remote(kind, key, suffix))
        if record is None:
            return False
        size = int(record["bytes"])

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                for offset in range(0, max(size, 1), CHUNK):
                    f.write(ray.get(self.server.read.remote(kind, key, suffix, offset, CHUNK)))

        self.install(kind, key, suffix, record, write)
        return True

    def save(self, kind: str, key: str, obj: Any, meta: dict | None = None) -> Path:
        path = super().save(kind, key, obj, meta)
        if kind not in NODE_KINDS:
            self.send(kind, key)
        return path

    def send(self, kind: str, key: str, suffix: str = RECORD) -> None:
        """Copy a record of this node's cache into the driver's."""
        import ray

        record = self.verified(kind, key, suffix)
        if record is None:
            return
        refs = []
        with open(self.path(kind, key, suffix), "rb") as f:
            while chunk := f.read(CHUNK):
                refs.append(ray.put(chunk))
        ray.get(self.server.receive.remote(kind, key, suffix, record, refs))


@dataclass(frozen=True)
class TrialPlace:
    """Where a trial runs, and so which cache and copy of the data it uses."""

    cache_root: str  # the driver's cache
    driver_node: str | None = None  # None: no cluster of several nodes (the embedded one)
    server: str | None = None  # the CacheServer's actor name
    storage_probe: str | None = None  # with --storage: a file the driver put in the shared directory

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialPlace:
        """The place a trial's config names (see `trial_places`)."""
        return cls(config["cache_root"], config.get("driver_node"), config.get("cache_server"),
                   config.get("storage_probe"))

    def remote(self) -> bool:
        """Whether this process runs on another node than the driver's."""
        if self.driver_node is None:
            return False
        import ray

        return ray.get_runtime_context().get_node_id() != self.driver_node

    def cache(self) -> ArtifactCache:
        if self.storage_probe is not None:
            if not (Path(self.cache_root) / self.storage_probe).exists():
                raise BenchError(f"node {describe_node()} does not see the shared storage {self.cache_root}: mount it "
                                 "at the same path on every node, or run without --storage")
            return ArtifactCache(self.cache_root)
        if not self.remote():
            return ArtifactCache(self.cache_root)
        import ray

        return NodeCache(default_cache_root(), ray.get_actor(self.server, namespace=NAMESPACE))

    def dataset(self, spec: str, fingerprint: str, cache: ArtifactCache) -> Dataset:
        """The planned data set; raises BenchError, naming this node, when it cannot be had or is
        not the planned data."""
        if isinstance(cache, NodeCache):
            data = _received_dataset(spec, fingerprint, cache)
        else:
            data = load_dataset(spec)
        if data.fingerprint() != fingerprint:
            raise BenchError(f"node {describe_node()} loaded {spec} with fingerprint {data.fingerprint()}, but the "
                             f"plan has {fingerprint}: the data changed since the plan or this node holds another copy")
        return data


_RECEIVED: dict[str, Dataset] = {}  # per worker process: a reused worker receives a data set once


def _received_dataset(spec: str, fingerprint: str, cache: NodeCache) -> Dataset:
    if fingerprint in _RECEIVED:
        return _RECEIVED[fingerprint]
    import ray

    record = cache.load(bundle.KIND, fingerprint)
    if record is None:
        problem = ray.get(cache.server.bundle_dataset.remote(spec, fingerprint))
        if problem:
            raise BenchError(f"node {describe_node()} cannot get {spec}: {problem}")
        record = cache.load(bundle.KIND, fingerprint)
    if record is None:
        raise BenchError(f"node {describe_node()} cannot get {spec}: the driver's bundle did not arrive")
    try:
        data = bundle.from_record(record)
    except ValueError as exc:
        raise BenchError(f"node {describe_node()}: {exc}") from None
    _RECEIVED[fingerprint] = data
    return data


def describe_node() -> str:
    """This machine and, inside Ray, its node: for error lines and the provenance of rows."""
    node = ""
    with contextlib.suppress(Exception):
        import ray

        if ray.is_initialized():
            node = f" (Ray node {ray.get_runtime_context().get_node_id()[:12]})"
    return f"{platform.node()}{node}"


# Settings that stay each node's own: where it caches and where the driver keeps its store.
NODE_SETTINGS = frozenset({"BENCH_CACHE", "BENCH_STORE"})


def worker_env() -> dict[str, Any]:
    """Ray's runtime_env for the trials of a cluster: the driver's code (its packages, shipped by
    Ray) and its ``BENCH_*`` settings, apart from the node-local ones."""
    import benchmark
    import core
    import evaluators
    import methods

    env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_") and k not in NODE_SETTINGS}
    env["HF_HUB_OFFLINE"] = os.environ.get("HF_HUB_OFFLINE", "1")
    return {"env_vars": env, "py_modules": [benchmark, core, evaluators, methods]}
