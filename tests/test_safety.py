"""Safe by default, checked the way an attacker would look: the sockets the Ray processes of a
real `bench run` listen on, with Ray imported before the harness could configure it."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import PROC, descendants, socket_inodes


def _listening() -> dict[str, str]:
    """inode -> local address of every listening TCP socket (IPv4 and IPv6) of the machine."""
    out = {}
    for name in ("tcp", "tcp6"):
        for line in (PROC / "net" / name).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            raw = fields[1].split(":")[0]
            packed = bytes.fromhex(raw)
            # /proc prints the address as native-endian 32-bit words
            words = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
            out[fields[9]] = str(ipaddress.ip_address(words))
    return out


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_every_socket_of_the_embedded_cluster_is_on_loopback(bench_env, tmp_path):
    """A method module imports Ray before `bench` configures it (Ray reads its loopback switch at
    import), and the environment does not set the switch: still nothing listens beyond 127.0.0.1.
    Ray's session (sockets, logs, which Ray makes world-writable) lies in a folder that another
    user cannot enter, and its authentication token is the run's own, not ``~/.ray/auth_token``."""
    (tmp_path / "imports_ray_first.py").write_text("import ray  # noqa: F401\n")
    home, base = tmp_path / "home", Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))
    home.mkdir()
    os.chmod(base, 0o1777)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" and not k.startswith("RAY_AUTH")}
    env |= {"BENCH_METHOD_MODULES": "imports_ray_first", "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
            "HOME": str(home), "TMPDIR": str(base)}
    run = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "--methods", "random", "--datasets", "digits",
                            "--ipc", "1", "--archs", "convnet3", "--seeds", "1", "--budget", "smoke",
                            "--no-references"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, str] = {}
    attack = None
    deadline = time.monotonic() + 240
    while run.poll() is None and time.monotonic() < deadline:
        sessions = list(base.glob("bench-ray-*/ray/session_*"))
        if attack is None and sessions:
            folder = sessions[0].parents[1]
            token = folder / "ray_auth_token"
            assert folder.stat().st_mode & 0o777 == 0o700 and token.stat().st_mode & 0o777 == 0o600
            if os.getuid() == 0:  # another user tries the session's sockets folder, the token and the lock
                attack = subprocess.run(["sh", "-c", f"ls {sessions[0]} || echo denied; cat {token} || echo denied; "
                                         f"echo 1 0 > {folder}/driver || echo denied"],
                                        user=65534, capture_output=True, text=True).stdout.split()
            else:
                attack = ["denied"] * 3
        listening = _listening()
        for pid in descendants(run.pid):
            for inode in socket_inodes(pid) & listening.keys():
                seen[f"{pid}:{inode}"] = listening[inode]
        time.sleep(0.2)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err[-3000:]
    assert len(seen) >= 3  # the GCS, the raylet and the workers were caught listening
    assert attack == ["denied"] * 3
    assert not (home / ".ray").exists()  # no token of Ray's own, readable by others, was written
    assert not list(base.glob("bench-ray-*"))  # the run removed its folder
    shutil.rmtree(base)
    beyond = sorted(address for address in seen.values() if not _is_loopback(address))
    assert not beyond, f"Ray listened on {beyond}"
