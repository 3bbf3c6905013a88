"""`bench pretrain`: train (or load from the cache) the small diffusion backbone of a data set,
then print its report and write a PNG grid of samples per denoiser beside it."""
from __future__ import annotations

import json
import time
from typing import Any

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmark.cli import args as flags

if TYPE_CHECKING:
    from core.artifacts import ArtifactCache


class PhaseProgress:
    """One rich bar per training or sampling phase, created when the phase first reports."""

    def __init__(self, console: Console):
        self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> PhaseProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(self._tasks[phase], completed=done, total=total)


_PARTS = {"vae": "VAE", "encode": "encode", "class_denoiser": "class DiT", "text_denoiser": "text UNet"}


def _table(report: dict[str, Any]) -> Table:
    # Names such as small[recipe=smoke] or imagefolder:DIR[size=8] would read as rich markup.
    table = Table(title=escape(f"{report['backbone']} backbone of {report['dataset']} (key {report['backbone_key']})"))
    table.add_column("what")
    table.add_column("value", justify="right")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} %"

    parts = ", ".join(f"{_PARTS.get(k, k)} {v:.0f}" for k, v in report["train_seconds_by_part"].items())
    rows = [
        ("params VAE / class DiT / text UNet", f"{report['params_vae']:,} / {report['params_class_denoiser']:,}"
                                               f" / {report['params_text_denoiser']:,}"),
        ("params text encoder (frozen)", f"{report['params_text_encoder']:,}"),
        ("latents at resolution", f"{'x'.join(map(str, report['latent_shape']))} at {report['resolution']} px"),
        ("training time", f"{report['train_seconds']:.0f} s ({parts})"),
        ("reconstruction MSE (test)", f"{report['recon_mse']:.5f}"),
        ("teacher acc: real test images", pct(report["teacher_acc_real"])),
        ("teacher acc: reconstructions", pct(report["teacher_acc_recon"])),
    ]
    for sampler, accs in report["sample_acc_by_sampler"].items():
        steps = f"{sampler.upper()} {report['sampling_steps']}"
        rows.append((f"teacher acc: class DiT samples, {steps}, g {report['class_guidance']}", pct(accs["class"])))
        rows.append((f"teacher acc: text UNet samples, {steps}, g {report['text_guidance']}", pct(accs["text"])))
    rows.append(("samples per class (grids: first sampler)", str(report["samples_per_class"])))
    for what, value in rows:
        table.add_row(what, value)
    return table


def run_pretrain(dataset: str, recipe: str, cache: ArtifactCache, as_json: bool) -> int:
    """Train or load the backbone, build or load its report, write the files, print."""
    import torch

    from core.datasets import load_dataset
    from methods.diffusion.backbone import get_backbone
    from benchmark.report.backbone_report import get_report, report_dir, write_report_files
    from methods.diffusion.small import RECIPES, validate

    started = time.perf_counter()
    data = load_dataset(dataset)
    chosen = RECIPES.get(recipe)
    validate(data, chosen)  # bad input fails before anything loads
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stderr = Console(stderr=True)
    with PhaseProgress(stderr) as progress:
        backbone = get_backbone(data, "small", cache=cache, device=device, progress=progress, recipe=recipe)
        record, report_cached = get_report(backbone, data, chosen.report, cache, device, progress)
    paths = write_report_files(report_dir(cache, backbone), record)
    out = dict(record["report"])
    out.update(cached=bool(backbone.info.get("cached")) and report_cached, recipe=recipe,
               seconds=round(time.perf_counter() - started, 1), files={k: str(v) for k, v in paths.items()})
    if as_json:
        print(json.dumps(out, indent=1))
        return 0
    console = Console(soft_wrap=True)
    console.print(_table(out))
    state = "loaded from the cache" if out["cached"] else "trained and cached"
    console.print(escape(f"{state} in {out['seconds']:.1f} s (cache: {cache.root})"))
    for label, path in paths.items():
        console.print(escape(f"{label}: {path}"))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="train (or load) the small diffusion backbone of a data set and report on it")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--recipe", default="small", help="backbone recipe: small (default) or smoke (seconds, for tests)")
    p.add_argument("--json", action="store_true")
    flags.add_paths(p, store=False)


def execute(args) -> int:
    return run_pretrain(args.dataset, args.recipe, flags.open_cache(args), args.json)
