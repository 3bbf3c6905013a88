"""How a stopped `bench` says so: Ctrl-C (SIGINT) or SIGTERM, and the exit code of each."""
from __future__ import annotations

from benchmark.cli.args import EXIT_INTERRUPTED, EXIT_TERMINATED


def stopped_by() -> str:
    from benchmark.cluster.ray_session import terminated

    return "terminated (SIGTERM)" if terminated() else "interrupted"


def stopped_code() -> int:
    from benchmark.cluster.ray_session import terminated

    return EXIT_TERMINATED if terminated() else EXIT_INTERRUPTED
