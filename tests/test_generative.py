"""The generative methods (dit, d4m, minimax, mgd3) and their shared parts, on small tensors
and a tiny randomly initialised backbone; end to end through the CLI in test_cli_e2e."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.grid.plan import GridRequest, plan_runs
from core.errors import BenchError
from methods import resolve_method
from methods.diffusion.finetune import FinetuneConfig, finetune, trainable_parameters
from methods.diffusion.kmeans import class_centres, kmeans
from methods.diffusion.samplers import SamplerConfig, sample_class
from methods.mgd3 import ModeGuidance
from methods.minimax import ClassMemory, MinimaxLoss, minimax_terms


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- k-means: prototypes (d4m) and modes (mgd3) -------------------------------------------------

def test_kmeans_gives_k_non_empty_clusters_whose_centres_are_their_means():
    x = torch.randn(200, 6, generator=gen(1)) + torch.randn(200, 1, generator=gen(2)).sign() * 3
    result = kmeans(x, 7, gen())
    assert result.centres.shape == (7, 6)
    assert sorted(result.assignment.unique().tolist()) == list(range(7))
    for k in range(7):
        members = x[result.assignment == k].double()
        assert torch.allclose(result.centres[k].double(), members.mean(0), atol=1e-5)
    # every point is assigned to its nearest centre (a fixed point of Lloyd's algorithm)
    assert torch.equal(torch.cdist(x, result.centres).argmin(1), result.assignment)


def test_kmeans_is_seeded_and_handles_repeated_points():
    x = torch.randn(50, 3, generator=gen(3))
    assert torch.equal(kmeans(x, 5, gen(4)).centres, kmeans(x, 5, gen(4)).centres)
    repeated = torch.cat([torch.zeros(6, 2), torch.ones(2, 2)])  # 2 distinct points, 4 clusters
    assert sorted(kmeans(repeated, 4, gen()).assignment.unique().tolist()) == [0, 1, 2, 3]
    assert torch.equal(kmeans(x, 50, gen()).centres.sort(0).values, x.sort(0).values)  # k = N: the points


def test_class_centres_are_exactly_ipc_per_class_in_latent_shape():
    latents = torch.randn(90, 4, 2, 2, generator=gen(5))
    labels = torch.arange(3).repeat(30)
    centres, centre_labels = class_centres(latents, labels, 3, 4, gen())
    assert centres.shape == (12, 4, 2, 2) and centre_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # each class's centres come from its own latents: shifting one class moves only its centres
    shifted = latents.clone()
    shifted[labels == 1] += 100
    moved, _ = class_centres(shifted, labels, 3, 4, gen())
    assert torch.allclose(moved[4:8], centres[4:8] + 100, atol=1e-3)
    assert torch.allclose(moved[:4], centres[:4]) and torch.allclose(moved[8:], centres[8:])
    with pytest.raises(BenchError, match="fewer than the 31 clusters"):
        class_centres(latents, labels, 3, 31, gen())


# --- Minimax -------------------------------------------------------------------------------------

def test_minimax_terms_are_one_minus_min_cos_and_max_cos_over_the_class_memories():
    real, past = ClassMemory(2, 8), ClassMemory(2, 8)
    r = torch.randn(5, 3, generator=gen(6))
    p = torch.randn(4, 3, generator=gen(7))
    real.push(r, torch.zeros(5, dtype=torch.long))
    past.push(p, torch.zeros(4, dtype=torch.long))
    x = torch.randn(3, 3, generator=gen(8))
    labels = torch.tensor([0, 0, 1])  # class 1 has empty memories: it contributes to neither term
    rep, div = minimax_terms(x, labels, real, past)
    cos = torch.nn.functional.cosine_similarity
    want_rep = sum(1 - min(float(cos(x[i], r[j], dim=0)) for j in range(5)) for i in (0, 1)) / 2
    want_div = sum(max(float(cos(x[i], p[j], dim=0)) for j in range(4)) for i in (0, 1)) / 2
    assert float(rep) == pytest.approx(want_rep, abs=1e-5)
    assert float(div) == pytest.approx(want_div, abs=1e-5)
    empty = minimax_terms(x, labels, ClassMemory(2, 8), ClassMemory(2, 8))
    assert float(empty[0]) == 0.0 and float(empty[1]) == 0.0


def test_memories_are_fifo_of_the_configured_size_per_class():
    memory = ClassMemory(2, 3)
    memory.push(torch.arange(4.).view(4, 1), torch.tensor([0, 0, 1, 0]))
    memory.push(torch.tensor([[10.], [11.]]), torch.tensor([0, 0]))
    assert memory.get(0).flatten().tolist() == [3.0, 10.0, 11.0]  # oldest (0, 1) dropped
    assert memory.get(1).flatten().tolist() == [2.0]


def test_minimax_loss_reads_memories_before_queuing_the_batch():
    loss = MinimaxLoss(num_classes=2, memory=4, rep_weight=1.0, div_weight=1.0)
    x, z = torch.randn(2, 3), torch.randn(2, 3)
    y = torch.tensor([0, 0])
    assert float(loss(x, z, y)) == 0.0  # both memories empty at the first batch
    assert loss.real.get(0).shape == (2, 3) and loss.past.get(0).shape == (2, 3)
    assert float(loss(x, z, y)) != 0.0


@pytest.fixture(scope="module")
def tiny_backbone(tiny_backbone_parts):
    return tiny_backbone_parts(3)


def test_only_the_declared_parameter_subset_is_fine_tuned(tiny_backbone):
    dit = tiny_backbone.class_denoiser
    before = {k: v.clone() for k, v in dit.state_dict().items()}
    subset = set(trainable_parameters(dit))
    assert subset and all(name.endswith("bias") or "class_embedder" in name for name in subset)
    latents, labels = torch.randn(32, 4, 4, 4), torch.arange(3).repeat(11)[:32]
    tuned, log = finetune(dit, latents, labels, tiny_backbone.scheduler_config,
                          FinetuneConfig(steps=5, batch_size=8, lr=1e-2, ema_decay=0.0),
                          null_label=3, extra_loss=MinimaxLoss(3, 4, 0.002, 0.008))
    after = tuned.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    blocks = len(dit.transformer_blocks)
    scaled = {f"transformer_blocks.{i}.{p}" for i in range((blocks + 1) // 2)
              for p in ("attn1.to_out.0.weight", "ff.net.2.weight")}
    assert changed - subset == scaled  # besides the subset, only the folded scale factors moved
    assert changed & subset  # and the subset did train
    assert all(torch.equal(before[k], v) for k, v in dit.state_dict().items())  # the original is untouched
    assert log["trainable_params"] == sum(p.numel() for p in trainable_parameters(dit).values()) + 2 * ((blocks + 1) // 2)


# --- MGD3 mode guidance --------------------------------------------------------------------------

def test_mode_guidance_runs_while_t_is_above_stop_t_and_never_after(tiny_backbone):
    from methods.diffusion.context import DiffusionContext

    ctx = DiffusionContext(tiny_backbone, channels=1, image_size=8, prompts=("a", "b", "c"))
    labels = torch.tensor([0, 1, 2])
    modes = torch.randn(3, 4, 4, 4, generator=gen(9))
    config = SamplerConfig(kind="ddpm", steps=10, guidance=4.0)
    guidance = ModeGuidance(modes, scale=0.1, stop_index=5, applied=[])
    guided = sample_class(ctx, labels, config, gen(1), callback=guidance)
    assert guidance.applied == [0, 1, 2, 3, 4]
    plain = sample_class(ctx, labels, config, gen(1))
    assert not torch.allclose(guided, plain)
    never = ModeGuidance(modes, scale=0.1, stop_index=0, applied=[])
    assert torch.allclose(sample_class(ctx, labels, config, gen(1), callback=never), plain, atol=1e-5)
    assert never.applied == []


def test_mgd3_guides_while_the_respaced_t_is_above_stop_t():
    # MGD3/EVLF `p_sample_with_guidance`: guided `if t > stop_t`, t from 49 down to 0, stop_t 25:
    # t = 49 ... 26, the first 24 step indices
    mgd3 = resolve_method("mgd3").distiller
    assert mgd3.guidance(torch.zeros(1)).stop_index == 24
    # 10 steps, stop_t = 2: t = 9 ... 3 guided, 7 steps; stop_t at the top: never guided
    assert resolve_method("mgd3[stop_fraction=0.2,steps=10]").distiller.guidance(torch.zeros(1)).stop_index == 7
    assert resolve_method("mgd3[stop_fraction=1.0,steps=10]").distiller.guidance(torch.zeros(1)).stop_index == 0


# --- options, presets, config hashes -------------------------------------------------------------

def test_presets_fill_unset_options_and_the_config_records_them():
    d4m = resolve_method("d4m").distiller
    small = d4m.config()
    assert small["preset"] == "small" and small["options"]["guidance"] == 4.0
    assert small["options"]["strength"] == 0.7 and small["options"]["negative_prompt"] == ""
    paper = resolve_method("d4m[backbone=sd15]").distiller.config()
    assert paper["preset"] == "pretrained" and paper["options"]["guidance"] == 8.0
    assert paper["options"]["negative_prompt"] == "cartoon, anime, painting"
    assert resolve_method("minimax").distiller.settings.ft_steps == 600
    assert resolve_method("minimax[backbone=dit-xl-2-256]").distiller.settings.ft_steps == 12000


def test_an_override_names_the_row_and_changes_the_run_hash():
    plan = plan_runs(GridRequest(methods=("d4m", "d4m[strength=0.5]"), datasets=("digits",), ipcs=(1,),
                                 budget="smoke", seeds=(0,), references=False))
    by_label = {r.method: r for r in plan.runs}
    assert set(by_label) == {"d4m", "d4m[strength=0.5]"}
    assert json.loads(by_label["d4m[strength=0.5]"].method_config)["options"]["strength"] == 0.5
    assert by_label["d4m"].run_hash != by_label["d4m[strength=0.5]"].run_hash


@pytest.mark.parametrize(("argv", "expected"), [
    (["--methods", "d4m[strenght=0.5]"], "method 'd4m' has no option 'strenght'"),
    (["--methods", "d4m[strength=high]"], "option 'strength' of method 'd4m' must be float, got 'high'"),
    (["--methods", "d4m[strength=1.5]"], "strength must be in (0, 1]"),
    (["--methods", "mgd3", "--ipc", "500"], "IPC 500 is larger than the smallest class of digits"),
    (["--methods", "dit[backbone=sd15]"], "method 'dit' needs a class-conditional denoiser, which backbone 'sd15' lacks"),
    (["--methods", "d4m[backbone=dit-xl-2-256]"], "needs a text-conditional denoiser"),
    (["--methods", "dit[backbone=sd3]"], "unknown backbone 'sd3'"),
    (["--methods", "dit[recipe=tiny]"], "unknown backbone recipe 'tiny'"),
    (["--methods", "dit[sampler=euler]"], "unknown sampler 'euler'"),
    (["--methods", "random+evlf"], "method 'random' has no encoder hook"),
    (["--methods", "herding+evlf"], "method 'herding' has no encoder hook"),
    (["--methods", "d4m+nothing"], "unknown plug-in 'nothing'"),
    (["--methods", "dit[backbone=dit-xl-2-256]"], "backbone 'dit-xl-2-256' samples ImageNet-1k classes, and the "
                                                   "classes of digits are not ImageNet wnids"),
])
def test_bad_method_input_is_refused_before_any_work(argv, expected, bench_env, capsys):
    assert main(["run", *argv, "--datasets", "digits", "--budget", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


def test_plugin_options_never_shadow_a_method_option():
    # `X+P[name=v]` routes `name` to the plug-in when it declares it: a shared name would make
    # the method's option unreachable in every +P variant.
    from methods import METHODS
    from core.options import option_names
    from methods.plugins import PLUGINS
    from methods.registry import encoder_methods

    assert "evlf" in PLUGINS.names() and set(encoder_methods()) >= {"dit", "d4m", "minimax", "mgd3"}
    for plugin in PLUGINS.names():
        for method in encoder_methods():
            shared = set(option_names(PLUGINS.get(plugin).Options)) & set(option_names(METHODS.get(method).Options))
            assert not shared, (plugin, method, shared)


def test_evlf_options_go_to_the_plugin_and_the_rest_to_the_method():
    spec = resolve_method("d4m+evlf[lambda1=0.05,layers=4,strength=0.5]")
    d4m = spec.distiller
    assert spec.label == "d4m+evlf[lambda1=0.05,layers=4,strength=0.5]"
    assert d4m.settings.strength == 0.5
    [evlf] = d4m.plugins
    assert (evlf.options.lambda1, evlf.options.layers) == (0.05, 4)
    assert d4m.config()["plugins"][0]["options"]["lambda1"] == 0.05
    assert resolve_method("dit+evlf").distiller.settings.adapt_steps > 0  # dit's own value for a replaced hook
    assert resolve_method("dit+evlf[adapt_steps=7]").distiller.settings.adapt_steps == 7
    assert resolve_method("dit").distiller.settings.adapt_steps == 0
    with pytest.raises(BenchError, match="has no option 'lamda1'"):
        resolve_method("d4m+evlf[lamda1=0.1]")
    with pytest.raises(BenchError, match="EVLF option 'latent' must be 'mean' or 'sample'"):
        resolve_method("mgd3+evlf[latent=median]")


# --- the hook is the only difference between X and X+plug-in -------------------------------------

SMOKE_EVLF = "train_steps=30,width=32,heads=2,ffn=64,diag_images=100"


@pytest.fixture(scope="module")
def smoke_setup(tmp_path_factory):
    from core.artifacts import ArtifactCache
    from core.datasets import load_dataset
    from methods.base import DistillContext
    from methods.plugins import PLUGINS, Plugin, register_plugin

    if "same-latents" not in PLUGINS:
        @register_plugin("same-latents")
        class SameLatents(Plugin):
            """Replaces the hook by an equal one: a variant that must not change anything."""

            def wrap(self, dctx, data, ctx):
                return dctx.replace_hook(dctx.encode_real, "same")

    cache = ArtifactCache(tmp_path_factory.mktemp("cache"))
    return load_dataset("digits"), DistillContext(cache, torch.device("cpu"))


@pytest.mark.parametrize("method", ["d4m[recipe=smoke]", "mgd3[recipe=smoke]"])
def test_a_variant_differs_from_its_base_only_through_the_hook(smoke_setup, method):
    data, ctx = smoke_setup
    base, name_options = method.split("[")
    plain = resolve_method(method).distiller.distill(data, 2, 3, ctx)
    same = resolve_method(f"{base}+same-latents[{name_options}").distiller.distill(data, 2, 3, ctx)
    assert torch.equal(plain.images, same.images) and torch.equal(plain.labels, same.labels)
    assert same.meta["hook"] == "vae-mean+same"
    fused = resolve_method(f"{base}+evlf[{name_options[:-1]},{SMOKE_EVLF}]").distiller
    fused.prepare(data, ctx)
    out = fused.distill(data, 2, 3, ctx)
    assert out.meta["hook"].startswith("vae-mean+evlf:") and torch.equal(out.labels, plain.labels)
    assert not torch.equal(out.images, plain.images)
