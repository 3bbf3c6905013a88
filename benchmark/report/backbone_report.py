"""The report on a backbone that `bench pretrain` prints: parameter counts, training time,
reconstruction error, and the teacher's accuracy on reconstructions and on class-conditional
samples of each denoiser, with a PNG grid of samples per denoiser.

The report is cached under its own key (backbone, teacher, report settings), so asking again
costs a cache read; its PNGs are rewritten from the cached sample grids when missing.
"""
from __future__ import annotations

import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.report.sample_grids import class_rows, save_class_grid
from core.artifacts import ArtifactCache, content_key
from core.datasets.base import normalise
from core.files import write_atomic
from core.teachers import TeacherRecipe
from evaluators.teacher import get_teacher
from evaluators.train import accuracy
from methods.diffusion.backbone import Backbone, ProgressFn, no_progress
from methods.diffusion.context import DiffusionContext
from methods.diffusion.samplers import SamplerConfig, StepState, sample_class, sample_text
from methods.diffusion.small import ARTIFACT_KIND, ReportConfig

REPORT_VERSION = 2
REPORT_KIND = "backbone-report"


@dataclass(frozen=True)
class PretrainReport:
    dataset: str
    backbone: str
    backbone_key: str
    params_vae: int
    params_class_denoiser: int
    params_text_denoiser: int
    params_text_encoder: int
    train_seconds: float
    train_seconds_by_part: dict[str, float]
    resolution: int
    latent_shape: tuple[int, int, int]
    latent_scale: float
    recon_mse: float
    teacher_acc_real: float
    teacher_acc_recon: float
    sample_acc_class_denoiser: float | None
    sample_acc_text_denoiser: float | None
    sample_acc_by_sampler: dict[str, dict[str, float | None]]
    samples_per_class: int
    sampler: str
    sampling_steps: int
    class_guidance: float
    text_guidance: float
    teacher_key: str
    teacher_steps: int
    report_seconds: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def report_dir(cache: ArtifactCache, backbone: Backbone) -> Path:
    """The backbone's own directory in the cache: its report and sample grids live there."""
    return cache.root / ARTIFACT_KIND / backbone.key


def _teacher_scores(teacher, images: torch.Tensor, labels: torch.Tensor, data) -> float:
    x = normalise(images.to(next(teacher.model.parameters()).device), data.mean, data.std)
    return accuracy(teacher.model, x, labels.to(x.device))


def _samples(ctx: DiffusionContext, kind: str, labels: torch.Tensor, sampler: str, cfg: ReportConfig,
             progress: ProgressFn) -> torch.Tensor:
    """Class-conditional samples of one denoiser, decoded, with a progress bar over the steps."""
    guidance = cfg.class_guidance if kind == "class" else cfg.text_guidance
    config = SamplerConfig(sampler, cfg.steps, guidance)
    generator = torch.Generator().manual_seed(cfg.seed)
    phase = f"samples ({kind}, {sampler})"
    total = cfg.steps * -(-len(labels) // ctx.batch_size)
    done = [0]

    def tick(state: StepState) -> None:
        done[0] += 1
        progress(phase, done[0], total)

    if kind == "class":
        latents = sample_class(ctx, labels, config, generator, callback=tick)
    else:
        latents = sample_text(ctx, ctx.class_prompts(labels), config, generator, callback=tick)
    return ctx.decode(latents).cpu()


def _build(backbone: Backbone, data, cfg: ReportConfig, teacher, progress: ProgressFn) -> dict[str, Any]:
    started = time.perf_counter()
    ctx = DiffusionContext.for_dataset(backbone, data)
    real = data.test.float_images()
    progress("reconstruct", 0, 1)
    recon = ctx.decode(ctx.encode_real(real, data.test.labels)).cpu()
    progress("reconstruct", 1, 1)
    recon_mse = float(torch.mean((recon - real) ** 2))
    labels = torch.arange(data.num_classes).repeat_interleave(cfg.samples_per_class)
    # by_sampler[sampler][kind]: accuracy; the grids show the first sampler's samples.
    by_sampler: dict[str, dict[str, float | None]] = {}
    grids: dict[str, torch.Tensor] = {}
    for sampler in cfg.samplers:
        by_sampler[sampler] = {}
        for kind in ("class", "text"):
            if getattr(backbone, f"{kind}_denoiser") is None:
                by_sampler[sampler][kind] = None
                continue
            images = _samples(ctx, kind, labels, sampler, cfg, progress)
            by_sampler[sampler][kind] = round(_teacher_scores(teacher, images, labels, data), 2)
            if sampler == cfg.samplers[0]:
                keep = torch.cat(class_rows(labels, cfg.grid_per_class))
                grids[kind] = (images[keep] * 255).round().to(torch.uint8)
    accs = by_sampler[cfg.samplers[0]]
    counts = backbone.param_counts()
    seconds = dict(backbone.info.get("train_seconds", {}))
    report = PretrainReport(
        dataset=data.name, backbone=backbone.name, backbone_key=backbone.key, **counts,
        train_seconds=round(float(seconds.get("total", 0.0)), 1),
        train_seconds_by_part={k: round(float(v), 1) for k, v in seconds.items() if k != "total"},
        resolution=backbone.resolution, latent_shape=backbone.latent_shape,
        latent_scale=round(backbone.latent_scale, 5), recon_mse=round(recon_mse, 6),
        teacher_acc_real=round(teacher.test_acc, 2),
        teacher_acc_recon=round(_teacher_scores(teacher, recon, data.test.labels, data), 2),
        sample_acc_class_denoiser=accs["class"], sample_acc_text_denoiser=accs["text"],
        sample_acc_by_sampler=by_sampler,
        samples_per_class=cfg.samples_per_class, sampler=cfg.samplers[0], sampling_steps=cfg.steps,
        class_guidance=cfg.class_guidance, text_guidance=cfg.text_guidance, teacher_key=teacher.key,
        teacher_steps=teacher.recipe.steps, report_seconds=round(time.perf_counter() - started, 1),
    )
    return {"report": report.to_json(), "grids": grids, "grid_per_class": cfg.grid_per_class}


def get_report(backbone: Backbone, data, cfg: ReportConfig, cache: ArtifactCache, device: torch.device,
               progress: ProgressFn = no_progress) -> tuple[dict[str, Any], bool]:
    """The report record (``report`` dict, uint8 ``grids`` per denoiser) and whether it came from the cache."""
    teacher_recipe = TeacherRecipe(steps=cfg.teacher_steps)
    key = content_key({"backbone": backbone.key, "teacher": dataclasses.asdict(teacher_recipe),
                       "data": data.fingerprint(), "config": dataclasses.asdict(cfg), "version": REPORT_VERSION})
    record = cache.load(REPORT_KIND, key)
    if record is not None:
        return record, True
    progress("teacher", 0, 1)
    teacher = get_teacher(data, teacher_recipe, cache, device)
    progress("teacher", 1, 1)
    record = _build(backbone, data, cfg, teacher, progress)
    cache.save(REPORT_KIND, key, record, meta={"backbone": backbone.key, "dataset": data.name})
    return record, False


def write_report_files(directory: Path, record: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.json`` and one ``samples_<kind>_denoiser.png`` per denoiser (one row per class)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"report_json": directory / "report.json"}
    for kind, grid in record["grids"].items():
        per_class = record["grid_per_class"]
        labels = torch.arange(grid.shape[0] // per_class).repeat_interleave(per_class)
        buffer = io.BytesIO()
        save_class_grid(grid.float() / 255, labels, buffer, per_class)
        path = directory / f"samples_{kind}_denoiser.png"
        write_atomic(path, lambda f, payload=buffer.getvalue(): f.write(payload))
        paths[f"grid_{kind}_denoiser"] = path
    payload = json.dumps(record["report"], indent=1).encode()
    write_atomic(paths["report_json"], lambda f: f.write(payload))
    return paths
