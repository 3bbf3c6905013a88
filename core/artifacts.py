"""Content-addressed cache of distilled sets and trained models: ``<root>/<kind>/<key>.safetensors``
plus a checksum sidecar, and of large arrays (hook latents, decoded images) as ``<key>.npy`` files
that are memory-mapped, never read whole.

Nothing read from the cache is unpickled: records are safetensors with their structure as JSON
(`core.tensorfile`), arrays are loaded with ``allow_pickle=False``. Files are written atomically
with the permissions the user's umask gives (a group can share a cache) and verified on every
read; a file that fails verification is deleted and rebuilt, never returned.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core import tensorfile
from core.errors import BenchError
from core.files import FILE_MODE, fsync_dir, write_atomic
from core.tensorfile import json_default  # noqa: F401  (re-exported: configs and rows use it)

try:  # POSIX advisory locks; without them concurrent writers are still atomic per file.
    import fcntl
except ImportError:  # pragma: no cover - not Linux
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("core.artifacts")

KEY_LENGTH = 20
RECORD = ".safetensors"
LEGACY = ".pt"  # records of harness versions before safetensors: ignored, removed when rebuilt
SUFFIXES = frozenset({RECORD, ".npy", ".json", LEGACY})
# kind and key become path parts: refuse separators, "..", and hidden names.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=+-]*$")


def content_key(config: dict) -> str:
    """First 20 hex chars of the sha256 of the config as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def default_cache_root() -> Path:
    """``$BENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/evlf-bench`` (default ``~/.cache/evlf-bench``)."""
    env = os.environ.get("BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "evlf-bench"


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class ArtifactCache:
    """Records (dicts of tensors, state dicts and JSON values) and arrays stored by kind and content key."""

    def __init__(self, root: str | Path, readonly: bool = False):
        """``readonly``: for commands that only look (plan, show, leaderboard): the cache is
        neither created nor written, and reads take no lock file that is not there already."""
        self.root = Path(root).expanduser()
        self.readonly = readonly
        self._started: dict[tuple[str, str], float] = {}  # what this process is building, since when
        if readonly:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on an existing read-only directory; only a real write proves we can cache.
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise BenchError(
                f"cannot write the artifact cache at {self.root}: {reason}; "
                "set BENCH_CACHE or --cache to a writable directory"
            ) from None

    def path(self, kind: str, key: str, suffix: str = RECORD) -> Path:
        """Where the record (``.safetensors``) or array (``.npy``) of this kind and key lives (whether or not it exists)."""
        if suffix not in SUFFIXES:  # it ends a path too: never a separator or ".."
            raise ValueError(f"invalid artifact suffix {suffix!r}: one of {sorted(SUFFIXES)}")
        for what, name in (("kind", kind), ("key", key)):
            if not _NAME.match(name):
                raise ValueError(f"invalid artifact {what} {name!r}: use letters, digits, _ . = + -")
        return self.root / kind / f"{key}{suffix}"

    def _sidecar(self, kind: str, key: str) -> Path:
        return self.path(kind, key, ".json")

    @contextlib.contextmanager
    def _locked(self, kind: str, key: str, exclusive: bool) -> Iterator[None]:
        # Readers share the lock and writers take it alone, so nobody sees a data file and a
        # sidecar from two different saves and mistakes that for corruption.
        if fcntl is None:
            yield
            return
        lock_path = self.path(kind, key).parent / f".{key}.lock"
        if self.readonly:
            if exclusive:
                raise BenchError(f"the artifact cache at {self.root} was opened read-only; nothing can be saved")
            if not lock_path.exists():  # never saved by anyone: nothing to guard
                yield
                return
        with open(lock_path, "r" if self.readonly else "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def building(self, kind: str, key: str, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """Held while one process checks for and builds the artifact of this kind and key: a
        second process (another `bench run` on the same cache) waits, then finds it built,
        instead of training the same teacher or backbone again. Reads need no such lock. What is
        saved under this key meanwhile records ``build_s``, the seconds since the lock was held
        (what `bench plan`'s calibration of shared models reads)."""
        if fcntl is None:
            with self._timed(kind, key):
                yield
            return
        folder = self.path(kind, key).parent
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".{key}.build", "a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if waiting is not None:
                    waiting(f"waiting for another process that is building {kind} {key[:12]}")
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                with self._timed(kind, key):
                    yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _timed(self, kind: str, key: str) -> Iterator[None]:
        self._started[(kind, key)] = time.perf_counter()
        try:
            yield
        finally:
            self._started.pop((kind, key), None)

    def meta(self, kind: str, key: str) -> dict | None:
        """The sidecar record (sha256, bytes, created_at, meta), or None if absent or unreadable.

        This does not verify the data file; :meth:`load` does.
        """
        try:
            record = json.loads(self._sidecar(kind, key).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def _try_load(self, kind: str, key: str, suffix: str, read: Callable[[Path], Any]) -> tuple[Any, str | None]:
        """(``read(file)``, None) if verified, (None, reason) if corrupted, (None, None) if absent."""
        data, sidecar = self.path(kind, key, suffix), self._sidecar(kind, key)
        if not data.exists() and not sidecar.exists():
            return None, None
        if not sidecar.exists():
            return None, "its checksum sidecar is missing"
        if not data.exists() and self.path(kind, key, LEGACY).exists():
            return None, None  # an older harness's pickled file: absent in this format, never read
        if not data.exists():
            return None, "the data file is missing but its sidecar is present"
        record = self.meta(kind, key)
        if record is None or not isinstance(record.get("sha256"), str):
            return None, "its sidecar is unreadable"
        try:
            digest = _sha256_file(data)
        except OSError as exc:
            return None, f"it cannot be read ({exc.strerror or exc})"
        if digest != record["sha256"]:
            return None, "its sha256 does not match the sidecar"
        try:
            return read(data), None
        except Exception as exc:  # noqa: BLE001 - any failure to read means rebuild
            return None, f"it cannot be read ({type(exc).__name__}: {exc})"

    def load(self, kind: str, key: str) -> Any | None:
        """The verified object (tensors on CPU), or None if absent or corrupted (then deleted)."""
        return self._load(kind, key, RECORD, tensorfile.read)

    def load_array(self, kind: str, key: str) -> np.ndarray | None:
        """The verified array, memory-mapped copy-on-write (the file is never changed and pages are
        read when touched), or None if absent or corrupted (then deleted). Never unpickles."""
        return self._load(kind, key, ".npy", lambda path: np.load(path, mmap_mode="c", allow_pickle=False))

    def _load(self, kind: str, key: str, suffix: str, read: Callable[[Path], Any]) -> Any | None:
        data = self.path(kind, key, suffix)
        if not data.parent.is_dir():
            return None
        with self._locked(kind, key, exclusive=False):
            obj, problem = self._try_load(kind, key, suffix, read)
        if problem is None:
            return obj
        if self.readonly:
            log.warning("artifact %s is corrupted (%s); left as it is (the cache is open read-only)", data, problem)
            return None
        with self._locked(kind, key, exclusive=True):
            # Look again alone: a writer may have replaced the pair between the two locks.
            obj, problem = self._try_load(kind, key, suffix, read)
            if problem is None:
                return obj
            log.warning("artifact %s is corrupted (%s); deleting it, it will be rebuilt", data, problem)
            for p in (data, self._sidecar(kind, key)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        return None

    def verified(self, kind: str, key: str, suffix: str = RECORD) -> dict | None:
        """The sidecar record of a file that is present and verifies (what another cache needs to
        receive it, see :meth:`install`), else None."""
        if not self.path(kind, key, suffix).parent.is_dir():
            return None
        with self._locked(kind, key, exclusive=False):
            ok, _ = self._try_load(kind, key, suffix, lambda path: True)
            return self.meta(kind, key) if ok else None

    def install(self, kind: str, key: str, suffix: str, record: dict, write: Callable[[Path], None]) -> Path:
        """Put in place a file received from another cache: ``write`` fills a temporary file, which
        is kept, with ``record`` as its sidecar, only if its sha256 is the record's."""
        if not isinstance(record.get("sha256"), str):
            raise ValueError(f"cannot install {kind}/{key}{suffix}: its record has no sha256")
        return self._write(kind, key, suffix, write, record.get("meta"), expect=record)

    def save(self, kind: str, key: str, obj: Any, meta: dict | None = None) -> Path:
        """Store ``obj`` atomically with a sha256 sidecar; returns the data file's path."""
        return self._write(kind, key, RECORD, lambda tmp: tensorfile.write(tmp, obj), meta)

    def write_array(self, kind: str, key: str, shape: tuple[int, ...], dtype: np.dtype | type,
                    fill: Callable[[np.ndarray], None], meta: dict | None = None) -> Path:
        """Store an array of ``shape`` and ``dtype`` that ``fill`` writes in place (a memory-mapped
        ``.npy`` file, so the array is never held in memory whole); atomic, with a sha256 sidecar."""

        def write(tmp: Path) -> None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
            fill(array)
            array.flush()
            del array

        return self._write(kind, key, ".npy", write, meta)

    def _write(self, kind: str, key: str, suffix: str, write: Callable[[Path], None], meta: dict | None,
               expect: dict | None = None) -> Path:
        data, sidecar = self.path(kind, key, suffix), self._sidecar(kind, key)
        data.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=data.parent, prefix=f".{data.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600; the cache follows the umask like any file
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            record = {
                "sha256": _sha256_file(tmp),
                "bytes": tmp.stat().st_size,
                "created_at": time.time(),
                "meta": meta or {},
            }
            if (kind, key) in self._started:
                record["build_s"] = round(time.perf_counter() - self._started[(kind, key)], 3)
            if expect is not None:
                if record["sha256"] != expect["sha256"]:
                    raise ValueError(f"{kind}/{key}{suffix} arrived damaged (its sha256 differs from the sender's)")
                record["created_at"] = expect.get("created_at", record["created_at"])
                if "build_s" in expect:  # the seconds it took where it was built
                    record["build_s"] = expect["build_s"]
            payload = json.dumps(record, sort_keys=True, indent=1, default=json_default).encode()
            with self._locked(kind, key, exclusive=True):
                os.replace(tmp, data)
                with contextlib.suppress(FileNotFoundError):
                    self.path(kind, key, LEGACY).unlink()
                # A crash here leaves new data with an old sidecar: detected as corrupted, rebuilt.
                write_atomic(sidecar, lambda f: f.write(payload))
            fsync_dir(data.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return data

    def discard(self, kind: str, key: str, suffix: str = RECORD) -> None:
        """Delete a file and its sidecar, if present."""
        if not self.path(kind, key, suffix).parent.is_dir():
            return
        with self._locked(kind, key, exclusive=True):
            for p in (self.path(kind, key, suffix), self._sidecar(kind, key)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def get_or_build(
        self, kind: str, key: str, build: Callable[[], Any], meta: dict | None = None
    ) -> Any:
        """The cached object, or ``build()`` saved under this key and returned (built once when
        several processes ask at the same time)."""
        obj = self.load(kind, key)
        if obj is not None:
            return obj
        with self.building(kind, key):
            obj = self.load(kind, key)  # built by another process while we waited
            if obj is None:
                obj = build()
                self.save(kind, key, obj, meta)
        return obj
