"""Does a new store agree with the committed one? Cell by cell (method, data set, IPC, student,
protocol, budget), whether the new cell's mean lies in the 95 % t interval of the committed
cell, and what the two runs spent training and testing students (a speed change must not move a
result beyond the seeds' own spread).

    .venv/bin/python benchmarks/store_agreement.py --new DIR [--committed leaderboards/store] [--json]
"""
from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark.report.stats import summarize

CELL = ("method", "dataset", "ipc", "arch", "protocol", "budget")


def cells(root: str) -> dict[tuple, list[dict[str, Any]]]:
    """The store's ok rows by cell, read without touching the store."""
    db = Path(root) / "bench.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        rows = conn.execute(f"SELECT {', '.join(CELL)}, test_acc, metrics FROM results WHERE status = 'ok'").fetchall()
    out: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for *key, acc, metrics in rows:
        out[tuple(key)].append({"test_acc": acc, **json.loads(metrics)})
    return out


def compare(committed: dict[tuple, list[dict]], new: dict[tuple, list[dict]]) -> list[dict[str, Any]]:
    report = []
    for key in sorted(set(committed) & set(new), key=str):
        old = summarize([r["test_acc"] for r in committed[key]])
        now = summarize([r["test_acc"] for r in new[key]])
        spent = {name: round(sum(r.get("train_s", 0) + r.get("test_s", 0) for r in rows), 1)
                 for name, rows in (("committed_s", committed[key]), ("new_s", new[key]))}
        report.append({**dict(zip(CELL, key)), "committed": round(old.mean, 2), "committed_ci95": round(old.ci95, 2),
                       "new": round(now.mean, 2), "n": now.n, "inside": abs(now.mean - old.mean) <= old.ci95,
                       "compiled": sum(bool(r.get("student_compiled")) for r in new[key]), **spent})
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", required=True)
    parser.add_argument("--committed", default="leaderboards/store")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = compare(cells(args.committed), cells(args.new))
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for r in report:
        mark = "ok " if r["inside"] else "OUT"
        print(f"{mark} {r['method']:<28} ipc {r['ipc']!s:>4}  committed {r['committed']:6.2f} ± {r['committed_ci95']:5.2f}"
              f"  new {r['new']:6.2f} (n {r['n']}, {r['compiled']} compiled)  students {r['committed_s']:7.1f} s"
              f" -> {r['new_s']:7.1f} s")
    inside = sum(r["inside"] for r in report)
    total_old = sum(r["committed_s"] for r in report)
    total_new = sum(r["new_s"] for r in report)
    print(f"{inside} of {len(report)} cells inside the committed 95 % interval; students' seconds "
          f"{total_old:,.0f} -> {total_new:,.0f} ({total_old / max(total_new, 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
