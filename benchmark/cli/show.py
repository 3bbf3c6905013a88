"""`bench show METHOD`: what a method spec resolves to (options after presets, plug-ins) and
what each plug-in reports about what it trained (figures and loss curves, as the plug-in
describes them). It never trains anything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark.cli import args as flags
from core.errors import BenchError

if TYPE_CHECKING:
    from core.artifacts import ArtifactCache

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """A curve in one line of block characters (downsampled to ``width`` points)."""
    if not values:
        return ""
    step = max(1, len(values) // width)
    points = [sum(values[i:i + step]) / len(values[i:i + step]) for i in range(0, len(values), step)]
    lo, hi = min(points), max(points)
    span = hi - lo or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((p - lo) / span * len(SPARKS)))] for p in points)


def show(method: str, dataset: str, cache: ArtifactCache) -> dict[str, Any]:
    from core.datasets import load_dataset
    from methods import resolve_method

    spec = resolve_method(method)
    data = load_dataset(dataset)
    return {"method": spec.label, "dataset": data.name, "config": spec.distiller.config(),
            "plugins": [report.to_json() for report in spec.distiller.plugin_reports(data, cache)]}


def _print(report: dict[str, Any], console: Console) -> None:
    table = Table(title=escape(f"{report['method']} on {report['dataset']}"))
    table.add_column("option")
    table.add_column("value")
    for key, value in report["config"].get("options", {}).items():
        table.add_row(key, escape(repr(value)))
    if "preset" in report["config"]:
        table.add_row("(preset)", report["config"]["preset"])
    for plugin in report["config"].get("plugins", []):
        for key, value in plugin["options"].items():
            table.add_row(f"{plugin['plugin']}.{key}", escape(repr(value)))
    console.print(table)
    for plugin in report["plugins"]:
        if plugin["status"] != "trained":
            console.print(f"plug-in {plugin['plugin']}: {plugin['status']}")
            continue
        lines = Table(title=f"plug-in {plugin['plugin']}: diagnostics")
        lines.add_column("what")
        lines.add_column("value", justify="right")
        for row in plugin["rows"]:
            value = f"{row['value']:.4g}" if isinstance(row["value"], float) else str(row["value"])
            lines.add_row(escape(row["name"]), escape(f"{value} {row['unit']}".strip()))
        for name, values in plugin["curves"].items():
            lines.add_row(escape(f"curve: {name}"), sparkline(values))
        console.print(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="a method spec resolved (options, presets) and its plug-ins' diagnostics")
    p.add_argument("method", help="a method spec, e.g. 'd4m+evlf'")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", help="write the plug-ins' loss curves to this PNG")
    flags.add_paths(p, store=False)


def execute(args) -> int:
    report = show(args.method, args.dataset, flags.open_cache(args, readonly=True))
    if args.plot:  # first: a plot that cannot be made is the whole answer
        write_curves(report, Path(args.plot))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report, Console())
    return 0


def write_curves(report: dict[str, Any], path: Path) -> None:
    """A PNG of each trained plug-in's curves against its training steps."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    trained = [p for p in report["plugins"] if p["status"] == "trained" and p["curves"]]
    if not trained:
        raise BenchError(f"--plot: '{report['method']}' has no trained plug-in with loss curves to plot on "
                         f"{report['dataset']} (a plug-in is trained by the first run that uses it)")
    fig, axes = plt.subplots(1, len(trained), figsize=(5 * len(trained), 3.2), squeeze=False)
    for ax, plugin in zip(axes[0], trained):
        for name, values in plugin["curves"].items():
            ax.plot(plugin["curve_steps"][: len(values)], values, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{plugin['plugin']} on {report['dataset']}")
        ax.legend()
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise BenchError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
