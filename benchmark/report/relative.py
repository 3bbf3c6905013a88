"""Relative scores: every row's cell compared with the `random` and `full` reference cells.

``gain_over_random`` = mean of the row's cell - mean of `random` at the same IPC;
``gain_over_recon`` = mean of the row's cell - mean of its decoding ceiling (`recon` through the
same backbone and hook, `methods.recon`) at the same IPC: what generation costs, for generative
rows; ``gap_to_full`` = mean of `full` - mean of the row's cell; all in percentage points, all
within one (dataset, protocol, budget, arch), so numbers of different protocols never mix.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from core.rows import ResultRow
from evaluators.evaluate import BEST_SEEN_LABEL
from methods.registry import ceiling_of, tuned_of

FULL, RANDOM = "full", "random"
QUALITY_KEYS = ("recognizability", "fd_teacher", "diversity", "coverage")


def _board(r: ResultRow) -> tuple[str, str, str, str]:
    return r.dataset, r.protocol, r.budget, r.arch


def cell_means(rows: Iterable[ResultRow]) -> dict[tuple, float]:
    """Mean test accuracy per (dataset, protocol, budget, arch, method, ipc) cell."""
    values: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r.status == "ok" and r.test_acc is not None:
            values[(*_board(r), r.method, r.ipc)].append(r.test_acc)
    return {k: sum(v) / len(v) for k, v in values.items()}


def relative_scores(rows: list[ResultRow]) -> dict[str, dict[str, float | None]]:
    """``{run_hash: {"gain_over_random": ..., "gain_over_recon": ..., "gap_to_full": ...}}`` for
    every ok row (None where the board lacks the reference row)."""
    means = cell_means(rows)
    # a tuned row's ceiling decodes through the hook its tuning chose (e.g. EVLF's lambda1)
    ceilings = {r.run_hash: ceiling_of(r.method, tuned_of(r.config.get("method_config", {}))) for r in rows}
    out: dict[str, dict[str, float | None]] = {}
    for r in rows:
        if r.status != "ok" or r.test_acc is None:
            continue
        mine = means[(*_board(r), r.method, r.ipc)]
        rand = means.get((*_board(r), RANDOM, r.ipc)) if r.ipc is not None else None
        ceiling = ceilings[r.run_hash]
        recon = means.get((*_board(r), ceiling, r.ipc)) if ceiling and r.ipc is not None else None
        full = means.get((*_board(r), FULL, None))
        out[r.run_hash] = {
            "gain_over_random": None if rand is None else round(mine - rand, 4),
            "gain_over_recon": None if recon is None else round(mine - recon, 4),
            "gap_to_full": None if full is None else round(full - mine, 4),
        }
    return out


def enriched_json(rows: list[ResultRow]) -> list[dict]:
    """Rows as JSON with relative scores and image-quality metrics lifted to the top level."""
    rel = relative_scores(rows)
    out = []
    for r in rows:
        d = r.to_json()
        d.update(rel.get(r.run_hash, {"gain_over_random": None, "gain_over_recon": None, "gap_to_full": None}))
        d.update({k: r.metrics.get(k) for k in QUALITY_KEYS})
        if r.metrics.get("test_acc_best_seen") is not None:
            d["test_acc_best_seen"] = {"value": r.metrics["test_acc_best_seen"], "selection": BEST_SEEN_LABEL}
        out.append(d)
    return out
