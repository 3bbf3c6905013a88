"""The provenance block that ends each leaderboard page: which code, packages and machine
produced its rows, each method's config hash, its compute time (distillation and evaluation
apart) and the bytes of its distilled sets. Everything comes from the rows themselves."""
from __future__ import annotations

import json
from collections import defaultdict

from tabulate import tabulate

from core.artifacts import content_key
from core.rows import ResultRow

NOT_RECORDED = "not recorded"


def _config_hash(row: ResultRow) -> str:
    config = row.config.get("method_config")
    config = json.loads(config) if isinstance(config, str) else config
    return content_key(config or {})[:10]


def _seconds(total: float) -> str:
    return f"{total / 60:.1f} min" if total >= 600 else f"{total:.0f} s"


def method_table(rows: list[ResultRow]) -> list[list[str]]:
    """One line per method: config hash(es), distillation time (each distilled set counted
    once), evaluation time (training plus test scoring), bytes per set."""
    by_method: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_method[r.method].append(r)
    table = []
    for method in sorted(by_method):
        mine = by_method[method]
        distilled: dict[str, float] = {}
        for r in mine:  # a set's distill_s is its original cost, also when a later run read it from the cache
            seconds = float(r.metrics.get("distill_s") or 0.0)
            distilled[r.metrics.get("distill_key") or f"{r.ipc}/{seconds}"] = seconds
        evaluation = sum(float(r.metrics.get("train_s") or 0) + float(r.metrics.get("test_s") or 0) for r in mine)
        sizes = sorted({(r.ipc, int(r.metrics["bytes"])) for r in mine if r.ipc is not None and "bytes" in r.metrics})
        table.append([method, ", ".join(sorted({_config_hash(r) for r in mine})),
                      _seconds(sum(distilled.values())), _seconds(evaluation),
                      ", ".join(f"IPC {ipc}: {size:,}" for ipc, size in sizes) or "—"])
    return table


def provenance_section(rows: list[ResultRow]) -> str:
    commits = sorted({r.git_commit for r in rows if r.git_commit})
    machines = sorted({r.versions.get("machine", NOT_RECORDED) for r in rows})
    packages: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for name, version in r.versions.items():
            if name != "machine":
                packages[name].add(version)
    listing = ", ".join(f"{name} {' / '.join(sorted(v))}" for name, v in sorted(packages.items()))
    unrecorded = sum(1 for r in rows if "machine" not in r.versions)
    machine_note = f" ({unrecorded} of {len(rows)} rows predate machine records)" if unrecorded else ""
    table = tabulate(method_table(rows), headers=["method", "config hash", "distillation", "evaluation",
                                                  "bytes per distilled set"],
                     tablefmt="github", disable_numparse=True)
    return (
        "\n### Provenance\n\n"
        f"- Commits: {', '.join(commits) or NOT_RECORDED}.\n"
        f"- Packages: {listing or NOT_RECORDED}.\n"
        f"- Machine: {'; '.join(m for m in machines if m != NOT_RECORDED) or NOT_RECORDED}{machine_note}.\n"
        f"- Rows: {len(rows)}. Compute is summed over them: distillation counts each distilled set once "
        "(at its original distillation time, also when later runs read it from the cache; shared "
        "backbones, fine-tuned denoisers and EVLF modules are trained outside the rows and not included), "
        "evaluation is student training plus test scoring.\n\n"
        f"{table}\n"
    )
