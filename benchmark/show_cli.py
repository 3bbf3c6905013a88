"""`bench show METHOD`: what a method spec resolves to (options after presets, plug-ins) and,
for plug-ins that train something, the diagnostics stored with it (EVLF: both loss curves,
fused-vs-raw distance, class retrieval on the test split). It never trains anything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from methods import resolve_method
from methods.base import DistillContext

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


def _plugin_diagnostics(distiller: Any, data, cache: ArtifactCache) -> list[dict[str, Any]]:
    from methods.diffusion.method import DiffusionDistiller

    if not distiller.plugins or not isinstance(distiller, DiffusionDistiller):
        return []
    if not distiller.backbone_available(data, cache):
        return [{"plugin": p.name, "status": "not trained yet (its backbone is not in the cache)"}
                for p in distiller.plugins]
    ctx = DistillContext(cache, torch.device("cpu"))
    dctx = distiller.plain_context(data, ctx)
    out = []
    for plugin in distiller.plugins:
        finder = getattr(plugin, "diagnostics", None)
        diagnostics = finder(dctx, data, ctx) if finder is not None else None
        if diagnostics is None:
            out.append({"plugin": plugin.name, "status": "not trained yet" if finder else "no diagnostics"})
        else:
            out.append({"plugin": plugin.name, "status": "trained", **diagnostics.to_json()})
        dctx = plugin.wrap(dctx, data, ctx) if diagnostics is not None else dctx
    return out


def show(method: str, dataset: str, cache: ArtifactCache) -> dict[str, Any]:
    spec = resolve_method(method)
    data = load_dataset(dataset)
    return {"method": spec.label, "dataset": data.name, "config": spec.distiller.config(),
            "plugins": _plugin_diagnostics(spec.distiller, data, cache)}


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
        held, curve = plugin["held_out"], plugin["curve"]
        lines = Table(title=f"plug-in {plugin['plugin']}: diagnostics ({plugin['steps']} steps, "
                            f"{plugin['train_seconds']:.0f} s)")
        lines.add_column("what")
        lines.add_column("value", justify="right")
        lines.add_row("InfoNCE (first → last)", f"{curve['info_nce'][0]:.3f} → {curve['info_nce'][-1]:.3f}  "
                                               f"{sparkline(curve['info_nce'])}")
        lines.add_row("MSE to input (first → last)", f"{curve['mse'][0]:.4f} → {curve['mse'][-1]:.4f}  "
                                                    f"{sparkline(curve['mse'])}")
        lines.add_row("held-out images", str(held["images"]))
        lines.add_row("fused vs raw: mean squared distance", f"{held['fused_mse']:.5f} "
                                                             f"({held['relative_mse']:.5f} of the raw variance)")
        lines.add_row("class retrieval: fused / raw / chance",
                      f"{held['retrieval_fused']:.3f} / {held['retrieval_raw']:.3f} / {held['chance']:.3f}")
        console.print(lines)


def cmd_show(args, cache: ArtifactCache) -> int:
    report = show(args.method, args.dataset, cache)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report, Console())
    if args.plot:
        write_curves(report, Path(args.plot))
    return 0


def write_curves(report: dict[str, Any], path: Path) -> None:
    """A PNG of each trained plug-in's loss curves (both terms and the MSE weight)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    trained = [p for p in report["plugins"] if p["status"] == "trained"]
    if not trained:
        return
    fig, axes = plt.subplots(1, len(trained), figsize=(5 * len(trained), 3.2), squeeze=False)
    for ax, plugin in zip(axes[0], trained):
        curve = plugin["curve"]
        ax.plot(curve["step"], curve["info_nce"], label="InfoNCE")
        ax.plot(curve["step"], curve["mse"], label="MSE to input")
        ax.plot(curve["step"], curve["mse_weight"], label="MSE weight", linestyle="--")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{plugin['plugin']} on {report['dataset']}")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
