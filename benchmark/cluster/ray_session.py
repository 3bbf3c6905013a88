"""The one way the harness starts or joins Ray (`bench run`, `bench eval`, `bench tune`).

``with ray_session(address) as session``: a private scratch folder (`benchmark.cluster.scratch`), an
embedded cluster on loopback with its own authentication token in that folder (never the
world-readable ``~/.ray/auth_token``), or a cluster joined at ``address`` after a check that a
Ray server answers there; shut down at the end. Every failure to start or reach Ray is one line
naming the cause and the remedy (a `BenchError`), never a traceback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmark.cluster.scratch import RAY_DIR, TOKEN, Scratch
from core.errors import BenchError

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": every Ray process on 127.0.0.1
START_TIMEOUT_ENV = "BENCH_RAY_START_S"
# Ray gives its local node 30 s to come up; on a loaded 2-core machine that is not always
# enough, so a start that times out is tried again until this many seconds have passed.
DEFAULT_START_S = 150.0
PROBE_S = 5.0  # how long a cluster address gets to answer like a Ray server
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class RaySession:
    scratch: Path  # the private folder: Tune's experiment folders go under it
    started: bool  # we started the cluster (else it was running, or we joined one)
    address: str | None  # the cluster joined, None for the embedded one

    @property
    def cluster(self) -> bool:
        """Whether trials may run on other machines (a cluster we joined or found running)."""
        return bool(self.address) or not self.started


def cluster_address(given: str | None) -> tuple[str | None, str]:
    """The cluster to join and where that came from: ``--address``, else Ray's own RAY_ADDRESS
    (whoever set it meant that cluster), else None (start an embedded one)."""
    if given:
        return given, "--address"
    return os.environ.get("RAY_ADDRESS") or None, "RAY_ADDRESS"


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return host.strip("[]"), port


def check_address(address: str, origin: str = "--address") -> None:
    """Fail fast, in one line, when no Ray server answers at a cluster address: the port must
    accept a connection and speak gRPC (HTTP/2), as Ray's GCS and client servers do."""
    if address == "auto":
        return
    host, port = _split(address)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BenchError(f"{origin} must be host:port, ray://host:port or auto, got '{address}'")
    unset = "; unset RAY_ADDRESS to start a cluster of this machine" if origin == "RAY_ADDRESS" else ""
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise BenchError(f"cannot reach the Ray cluster at {address} ({origin}): {exc.strerror or exc}{unset}") from None
    if not _speaks_grpc(host, int(port)):
        raise BenchError(f"the server at {address} ({origin}) is not a Ray cluster: it did not answer as a gRPC "
                         f"server (HTTP/2) within {PROBE_S:g} s; give the head node's GCS port (ray start --head prints it, "
                         f"6379 by default) or ray://host:10001{unset}")


# An HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4  # the frame type an HTTP/2 server must send first


def _speaks_grpc(host: str, port: int) -> bool:
    """Whether the server answers an HTTP/2 preface with a SETTINGS frame, as every gRPC server
    does (an HTTP/1 server answers 400 or closes; a silent one times out)."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_S) as conn:
            conn.sendall(_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    return head[3] == _SETTINGS


def loopback_only() -> None:
    """Keep the embedded cluster on 127.0.0.1 unless the user asked otherwise.

    Ray decides between loopback and the machine's interface address from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, which its driver reads once, when ``ray`` is first
    imported, and every process it starts reads again. Setting the variable is therefore not
    enough when something imported Ray earlier: the driver's copy of the flag is set too.
    """
    os.environ.setdefault(LOOPBACK_ENV, "0")
    if os.environ[LOOPBACK_ENV] == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def quiet_tune() -> None:
    """Tune prints nothing of its own: the harness shows progress itself; a trial that fails is
    one line, not Ray's traceback of its own internals (the run's row keeps the trial's error)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    controller = logging.getLogger(TUNE_CONTROLLER_LOG)
    if not any(isinstance(f, OneLineFailures) for f in controller.filters):
        controller.addFilter(OneLineFailures())


TUNE_CONTROLLER_LOG = "ray.tune.execution.tune_controller"


class OneLineFailures(logging.Filter):
    """Shortens a record that carries an exception (Tune's "Trial task failed", some 40 lines
    when a worker is killed) to its message and the exception's first line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = (str(exc).strip().splitlines() or [""])[0]
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {first}", ()
            record.exc_info, record.exc_text = None, None
        return True


def start_timeout() -> float:
    value = os.environ.get(START_TIMEOUT_ENV, "")
    if not value:
        return DEFAULT_START_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 86400:
        raise BenchError(f"{START_TIMEOUT_ENV} must be a number of seconds between 0 and 86400, got '{value}'")
    return seconds


@contextlib.contextmanager
def _own_token(scratch: Path) -> Iterator[None]:
    """The embedded cluster's authentication token: the scratch folder's, unless the user set
    Ray's token settings (then theirs). Ray's processes inherit it from the environment."""
    if any(name in os.environ for name in AUTH_ENV):
        yield
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(scratch / TOKEN))
    Config.initialize("")  # Ray caches its settings and the token: read them again
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield
    finally:
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
            os.environ.pop(name, None)


QUIET = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
         "configure_logging": True}


def _join(address: str) -> None:
    import ray

    from benchmark.cluster.artifacts import worker_env

    if _split(address)[0] in ("localhost", "127.0.0.1", "::1"):
        # A cluster on loopback: this driver must join it as 127.0.0.1 too. Ray would otherwise
        # take the machine's interface address for itself and wait for a node that never answers.
        os.environ[LOOPBACK_ENV] = "0"
        loopback_only()
    try:
        # the trials on other machines run the driver's code with the driver's settings
        ray.init(address=address, runtime_env=worker_env(), **QUIET)
    except Exception as exc:  # noqa: BLE001 (Ray raises bare Exception, RuntimeError, ConnectionError...)
        ray.shutdown()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = " (the cluster runs another Ray or Python version: install the same on this machine)" \
            if "version" in first.lower() else ""
        raise BenchError(f"cannot join the Ray cluster at {address}: {first}{hint}") from None


def _start_local(scratch: Path) -> None:
    """Start the embedded cluster, trying again while a start that timed out has time left."""
    import ray

    budget = start_timeout()
    deadline = time.monotonic() + budget
    while True:
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), _temp_dir=str(scratch / RAY_DIR), **QUIET)
            return
        except Exception as exc:  # noqa: BLE001 (Ray's start-up timeout is a bare Exception)
            ray.shutdown()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            timed_out = "timed out" in first.lower() or isinstance(exc, TimeoutError)
            if timed_out and time.monotonic() < deadline:
                continue
            if timed_out:
                raise BenchError(f"Ray's local node did not start within {budget:g} s (a loaded machine?): let the "
                                 f"cores settle, or raise {START_TIMEOUT_ENV} (now {budget:g})") from None
            raise BenchError(f"cannot start Ray on this machine: {first}; see {scratch / RAY_DIR} while it runs, "
                             "or join a running cluster with --address") from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[RaySession]:
    """Start an embedded cluster on loopback, or join ``address``; shut down what we started."""
    import ray

    with Scratch() as scratch:
        if ray.is_initialized():
            yield RaySession(scratch, started=False, address=address)
            return
        if address:
            check_address(address)
            _join(address)
            with _stop_on_sigterm():
                try:
                    yield RaySession(scratch, started=True, address=address)
                finally:
                    ray.shutdown()
            return
        loopback_only()
        with _own_token(scratch):
            _start_local(scratch)
            with _stop_on_sigterm():
                try:
                    yield RaySession(scratch, started=True, address=None)
                finally:
                    ray.shutdown()


_terminated = False


def terminated() -> bool:
    """Whether this process received SIGTERM during a Ray session (its exit code is then 143)."""
    return _terminated


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Ray's driver answers SIGTERM with a C stack dump and an abort (exit 134), losing the
    summary of what was done. Our handler, set after Ray's, turns it into Ctrl-C instead: Tune
    stops its trials, the finished rows are kept, and the command says what was not done."""
    def on_sigterm(signum: int, frame: object) -> None:
        global _terminated
        _terminated = True
        signal.raise_signal(signal.SIGINT)

    try:
        before = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: nothing of ours to set
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
