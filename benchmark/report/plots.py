"""The accuracy-against-IPC plot of a leaderboard page: one line per method (and student), its
95% confidence band shaded, the whole-data reference as a dashed line. Drawn with matplotlib's
Agg backend from the same rows as the table, so it shows no number the table does not."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from benchmark.report.stats import summarize
from core.rows import ResultRow

REFERENCE = "full"


def write_accuracy_plot(rows: list[ResultRow], path: Path, title: str) -> bool:
    """Write the PNG; False (and nothing written) when the rows hold fewer than two IPCs."""
    values: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    reference: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.status != "ok" or r.test_acc is None or not math.isfinite(r.test_acc):
            continue
        if r.ipc is None:
            reference[r.arch].append(float(r.test_acc))
        else:
            values[(r.method, r.arch)][r.ipc].append(float(r.test_acc))
    ipcs = sorted({ipc for series in values.values() for ipc in series})
    if len(ipcs) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    several = len({arch for _, arch in values} | set(reference)) > 1
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    bases = sorted({(method.split("+")[0], arch) for method, arch in values})
    palette = plt.get_cmap("tab10")
    colour = {base: palette(i % 10) for i, base in enumerate(bases)}
    for (method, arch), series in sorted(values.items()):
        xs = sorted(series)
        cells = [summarize(series[x]) for x in xs]
        means = [c.mean for c in cells]
        half = [0.0 if math.isnan(c.ci95) else c.ci95 for c in cells]
        label = f"{method} ({arch})" if several else method
        c = colour[(method.split("+")[0], arch)]
        style = "--" if "+" in method else "-"  # a variant: dashed, in its base method's colour
        ax.plot(xs, means, style, color=c, marker="o", markersize=3, label=label)
        ax.fill_between(xs, [m - h for m, h in zip(means, half)], [m + h for m, h in zip(means, half)],
                        color=c, alpha=0.10, linewidth=0)
    for arch, accs in sorted(reference.items()):
        ax.axhline(summarize(accs).mean, color="black", linestyle=":", linewidth=1,
                   label=f"{REFERENCE} ({arch})" if several else REFERENCE)
    ax.set_xscale("log")
    ax.set_xticks(ipcs, [str(i) for i in ipcs])
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("test accuracy (%), mean and 95% CI")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no version stamp: regeneration is byte-stable
    plt.close(fig)
    return True
