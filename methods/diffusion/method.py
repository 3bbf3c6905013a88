"""`DiffusionDistiller`: what every generative method shares.

It owns the backbone choice (``backbone``, ``recipe``), the hyper-parameters that depend on
the backbone's scale (paper-scale presets for pretrained backbones, small-backbone presets
for the harness's own; an option left unset takes its preset, and the resolved values are
what the run's config records), the diffusion context with its plug-ins applied, and the
checks that refuse a request before any work starts. A method implements :meth:`generate`
(latents and labels) and, when it trains something shared, :meth:`prepare_context`.
"""
from __future__ import annotations

import dataclasses
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from core.datasets.base import Dataset
from core.errors import BenchError
from core.options import fill_unset
from methods.base import DistillContext, DistilledSet, Distiller, check_ipc_fits
from methods.diffusion.backbone import BACKBONES, Backbone, get_backbone, require_denoiser
from methods.diffusion.context import DiffusionContext, class_ids_for
from methods.diffusion.samplers import SamplerConfig
from core.spec import NamedSpec
from core.stages import SharedStage
from methods.plugins import Plugin, PluginReport


@dataclass(frozen=True)
class DiffusionOptions:
    """Options every diffusion method has; ``None`` means the preset for the backbone's family."""

    backbone: str = "small"
    recipe: str = "small"  # the small family's training recipe (ignored by pretrained backbones)
    sampler: str | None = None  # ddpm | ddim
    steps: int | None = None
    guidance: float | None = None


_LOADED: dict[tuple, Backbone] = {}  # one backbone per process: trials and `prepare` reuse it


def _reporter(ctx: DistillContext):
    def progress(phase: str, done: int, total: int) -> None:
        ctx.report(f"{phase} {done}/{total}")

    return progress


class DiffusionDistiller(Distiller):
    """A method that generates its set with a diffusion backbone."""

    group = "generative"
    needs_encoder = True
    Options = DiffusionOptions
    uses_kmeans: ClassVar[bool] = False  # k = IPC clusters per class of real latents
    # backbone family ("small" | "pretrained") -> values for options left unset
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    ceiling_method: ClassVar[str] = "recon"  # real images through the hook and decoded (`methods.recon`)

    @classmethod
    def ceiling_spec(cls, spec: NamedSpec) -> NamedSpec | None:
        """``recon`` with this spec's backbone options and plug-ins (and their options): the same
        hook and decoder, fed with `random`'s real images instead of generated latents."""
        if cls.ceiling:
            return None
        from core.options import option_names
        from methods.plugins import PLUGINS
        from methods.registry import METHODS

        plugins = spec.name.split("+")[1:]
        keep = set(option_names(METHODS.get(cls.ceiling_method).Options)).union(
            *(option_names(PLUGINS.get(p).Options) for p in plugins))
        return NamedSpec("+".join([cls.ceiling_method, *plugins]), {k: v for k, v in spec.options.items() if k in keep})

    @property
    def family(self) -> str:
        return BACKBONES.get(self.options.backbone).family

    @property
    def settings(self) -> Any:
        """The options with every unset value taken from the preset of the backbone's family."""
        return fill_unset(self.options, self.presets.get(self.family, {}),
                          f"method '{self.name}' has no {self.family}-backbone default for {{fields}}; "
                          f"set it in the spec, e.g. {self.name}[{{first}}=...]")

    def sampler_config(self) -> SamplerConfig:
        s = self.settings
        return SamplerConfig(kind=s.sampler, steps=s.steps, guidance=s.guidance)

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "options": dataclasses.asdict(self.settings), "preset": self.family}
        sampling = BACKBONES.get(self.options.backbone).sampling.to_config()
        if sampling:  # a backbone sampled as its authors do (DiT's learned variance, ...); none for plain ones
            config["backbone_sampling"] = sampling
        return config

    def validate(self, data: Dataset, ipc: int) -> None:
        entry = BACKBONES.get(self.options.backbone)
        if self.needs_denoiser == "class" and entry.class_space is not None:
            class_ids_for(self.options.backbone, entry.class_space, data)
        if self.needs_denoiser is not None and self.needs_denoiser not in entry.denoisers:
            raise BenchError(f"method '{self.name}' needs a {self.needs_denoiser}-conditional denoiser, which "
                             f"backbone '{self.options.backbone}' lacks (it has: {', '.join(entry.denoisers)})")
        if entry.family == "small":
            from methods.diffusion.small import RECIPES

            RECIPES.get(self.options.recipe)
        if self.needs_denoiser is not None:
            self.sampler_config()  # refuses a bad sampler, step count or guidance
        if self.uses_kmeans:
            check_ipc_fits(data, ipc, self.name, ": '{method}' clusters each class's real latents into IPC groups")

    def backbone(self, data: Dataset, ctx: DistillContext) -> Backbone:
        # the small backbone trains only the denoiser this method samples with
        options = {"recipe": self.options.recipe, "denoisers": self.denoisers()} if self.family == "small" else {}
        if any(plugin.needs_text_encoder for plugin in self.plugins):
            options |= BACKBONES.get(self.options.backbone).text_options
        memo = (self.options.backbone, tuple(options.items()), data.fingerprint(), str(ctx.device))
        if memo not in _LOADED:
            _LOADED.clear()
            _LOADED[memo] = get_backbone(data, self.options.backbone, cache=ctx.cache, device=ctx.device,
                                         progress=_reporter(ctx), **options)
        return _LOADED[memo]

    def backbone_available(self, data: Dataset, cache: Any) -> bool:
        """Whether loading the backbone would not train it (pretrained ones never train)."""
        if self.family != "small":
            return True
        from methods.diffusion.small import ARTIFACT_KIND, DENOISER_KIND, RECIPES, backbone_key, denoiser_key

        key = backbone_key(data, RECIPES.get(self.options.recipe))
        record = cache.meta(ARTIFACT_KIND, key)
        if record is None:
            return False
        if record.get("meta", {}).get("denoisers") != "separate":
            return True  # an earlier harness's record: it holds both denoisers
        return all(cache.meta(DENOISER_KIND, denoiser_key(key, kind)) is not None for kind in self.denoisers())

    def shared_stages(self, data: Dataset, cache: Any) -> list[SharedStage]:
        stages = self.backbone_stages(data)
        # what comes after the backbone is keyed by it: known only once the backbone is built
        ctx = DistillContext(cache, torch.device("cpu"))
        dctx = self.plain_context(data, ctx) if self.backbone_available(data, cache) else None
        for plugin in self.plugins:
            stage = plugin.shared_stage(dctx, data)
            if stage is not None:
                stages.append(stage)
            built = dctx is not None and (stage is None or stage.cached(cache))
            dctx = plugin.wrap(dctx, data, ctx) if built else None
        hook = "".join(f" on {p.name} latents" for p in self.plugins)
        return stages + self.context_stages(dctx, data, hook)

    def backbone_stages(self, data: Dataset) -> list[SharedStage]:
        """The backbone's parts that loading it trains (a pretrained one trains none)."""
        if self.family != "small":
            return []
        from methods.diffusion.small import ARTIFACT_KIND, DENOISER_KIND, RECIPES, backbone_key, denoiser_key

        key, name = backbone_key(data, RECIPES.get(self.options.recipe)), f"{self.options.backbone}/{self.options.recipe}"
        return [SharedStage(f"{name} autoencoder", data.name, ARTIFACT_KIND, key)] + [
            SharedStage(f"{name} {kind} denoiser", data.name, DENOISER_KIND, denoiser_key(key, kind))
            for kind in self.denoisers()]

    def context_stages(self, dctx: DiffusionContext | None, data: Dataset, hook: str) -> list[SharedStage]:
        """What :meth:`prepare_context` builds on the hooked context (``dctx`` None: not built yet);
        ``hook`` names the plug-ins before it (" on evlf latents")."""
        return []

    def denoisers(self) -> tuple[str, ...]:
        """The denoisers this method samples with (none for a method that only encodes)."""
        return (self.needs_denoiser,) if self.needs_denoiser else ()

    def plugin_reports(self, data: Dataset, cache: Any) -> list[PluginReport]:
        if not self.plugins:
            return []
        if not self.backbone_available(data, cache):
            return [PluginReport(p.name, "not trained yet (its backbone is not in the cache)") for p in self.plugins]
        ctx = DistillContext(cache, torch.device("cpu"))
        dctx = self.plain_context(data, ctx)
        reports = []
        for plugin in self.plugins:
            diagnostics = plugin.diagnostics(dctx, data, ctx)
            if diagnostics is not None:
                reports.append(PluginReport(plugin.name, "trained", diagnostics))
                dctx = plugin.wrap(dctx, data, ctx)
            elif type(plugin).diagnostics is Plugin.diagnostics:
                reports.append(PluginReport(plugin.name, "no diagnostics"))
            else:
                reports.append(PluginReport(plugin.name, "not trained yet"))
        return reports

    def plain_context(self, data: Dataset, ctx: DistillContext) -> DiffusionContext:
        """The diffusion context of this data set with the plain hook."""
        backbone = self.backbone(data, ctx)
        if self.needs_denoiser is not None:  # a method that only encodes and decodes samples nothing
            require_denoiser(self, backbone)
        return DiffusionContext.for_dataset(backbone, data)

    def context(self, data: Dataset, ctx: DistillContext, prepare: bool = False) -> DiffusionContext:
        """The diffusion context of this data set, with every plug-in's hook applied in order."""
        dctx = self.plain_context(data, ctx)
        for plugin in self.plugins:
            if prepare:
                plugin.prepare(dctx, data, ctx)
            dctx = plugin.wrap(dctx, data, ctx)
        return dctx

    def class_centres(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                      ctx: DistillContext, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """IPC k-means centres per class of the hook's latents of the training split, and their
        labels (D4M's prototypes, MGD3's modes)."""
        from methods.diffusion.kmeans import class_centres
        from methods.diffusion.latents import train_latents

        ctx.report("encoding real images")
        latents, labels = train_latents(dctx, data, ctx.cache)
        ctx.report(f"k-means {what}")
        return class_centres(latents, labels, data.num_classes, ipc, generator)

    def prepare(self, data: Dataset, ctx: DistillContext) -> None:
        ctx.report(f"loading or training the '{self.options.backbone}' backbone for {data.name}")
        self.prepare_context(self.context(data, ctx, prepare=True), data, ctx)

    def prepare_context(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> None:
        """Train what every IPC and seed share (a fine-tuned denoiser), cached."""

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        dctx = self.context(data, ctx)
        generator = torch.Generator().manual_seed(seed)
        latents, labels, meta = self.generate(dctx, data, ipc, generator, ctx)
        ctx.report("decoding")
        images = dctx.decode(latents).cpu()
        return DistilledSet(images, labels.cpu(), meta={
            "seed": seed, "backbone": dctx.backbone.name, "backbone_key": dctx.backbone.key, "hook": dctx.hook_id,
            "settings": dataclasses.asdict(self.settings), **meta})

    @abstractmethod
    def generate(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                 ctx: DistillContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(latents, data set labels, extra meta) for exactly ``ipc`` images per class."""


def class_labels(num_classes: int, ipc: int) -> torch.Tensor:
    """0, 0, ..., 1, 1, ...: ``ipc`` of each class, in class order."""
    return torch.arange(num_classes).repeat_interleave(ipc)


@dataclass(frozen=True)
class Finetuning:
    """What a class-sampling method fine-tunes its denoiser with (see `methods.diffusion.finetune`)."""

    config: Any  # FinetuneConfig
    loss_config: dict[str, Any]  # names the extra loss; enters the cache key
    make_loss: Any  # () -> ExtraLoss | None


class ClassSampling(DiffusionDistiller):
    """Sample IPC latents per class from the class denoiser, optionally fine-tuned first on the
    hook's latents (once, cached, shared by every IPC and seed). `dit` and `minimax` are this
    with different fine-tuning."""

    needs_denoiser = "class"

    @property
    def fine_tunes(self) -> bool:
        """Whether :meth:`finetuning` returns a fine-tuning (it must not need the data to say so)."""
        return False

    def finetuning(self, data: Dataset) -> Finetuning | None:
        """The fine-tuning to run before sampling, or None to sample from the denoiser as is."""
        return None

    @property
    def fidelity(self) -> Any:
        """How the fine-tuning follows the reference code on this backbone family (`finetune.Fidelity`)."""
        from methods.diffusion.finetune import FIDELITY

        return FIDELITY[self.family]

    def config(self) -> dict[str, Any]:
        config = super().config()
        from methods.diffusion.finetune import Fidelity

        if self.fine_tunes and self.fidelity != Fidelity():  # recorded where it departs from the small recipe
            config["finetune_fidelity"] = dataclasses.asdict(self.fidelity)
        return config

    def _denoised_context(self, dctx: DiffusionContext, data: Dataset,
                          ctx: DistillContext) -> tuple[DiffusionContext, dict[str, Any]]:
        spec = self.finetuning(data)
        if spec is None:
            return dctx, {}
        from methods.diffusion.finetune import get_finetuned
        from methods.diffusion.latents import train_latents

        latents, labels = train_latents(dctx, data, ctx.cache)
        model, log = get_finetuned(dctx, data, spec.config, spec.loss_config, spec.make_loss, latents, labels,
                                   ctx.cache, progress=_reporter(ctx))
        return dctx.with_denoiser("class", model), {"finetune": log}

    def prepare_context(self, dctx: DiffusionContext, data: Dataset, ctx: DistillContext) -> None:
        self._denoised_context(dctx, data, ctx)

    def context_stages(self, dctx: DiffusionContext | None, data: Dataset, hook: str) -> list[SharedStage]:
        spec = self.finetuning(data)
        if spec is None:
            return []
        from methods.diffusion import finetune, latents

        return [SharedStage(f"latents of the training split{hook}", data.name, latents.KIND,
                            None if dctx is None else latents.latents_key(dctx, data)),
                SharedStage(f"{self.name} fine-tuning{hook}", data.name, finetune.KIND,
                            None if dctx is None else finetune.finetuned_key(dctx, data, spec.config, spec.loss_config))]

    def generate(self, dctx: DiffusionContext, data: Dataset, ipc: int, generator: torch.Generator,
                 ctx: DistillContext) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        from methods.diffusion.samplers import sample_class

        dctx, meta = self._denoised_context(dctx, data, ctx)
        labels = class_labels(data.num_classes, ipc)
        ctx.report("sampling")
        return sample_class(dctx, labels, self.sampler_config(), generator), labels, meta
