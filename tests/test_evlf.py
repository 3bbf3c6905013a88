"""The EVLF fusion module, its loss, training, cache and plug-in, on `digits` with a tiny
randomly initialised backbone (smoke recipe: 8x8 images, 4x4x4 latents, MiniLM of 8 tokens)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from core.errors import BenchError
from core.options import parse_options
from methods import METHODS
from methods.base import DistillContext
from methods.diffusion.context import DiffusionContext
from methods.dit import HOOK_ADAPT_STEPS
from methods.evlf import training
from methods.evlf.fusion import FusionConfig, FusionModule, Projector, projector_stride
from methods.evlf.losses import mse_weight, multi_positive_info_nce, pool_text
from methods.evlf.plugin import EVLF
from methods.evlf.training import SMOKE_OPTIONS, EVLFOptions, get_fusion, train_fusion
from methods.plugins import PLUGINS


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def dctx(data, tiny_backbone_parts) -> DiffusionContext:
    # An untrained VAE's latents have std ~0.2; a trained one's are of order 1 (the cached
    # Fashion-MNIST VAE: std 3). Scale them up so "close to the input" means what it will.
    backbone = tiny_backbone_parts(data.num_classes, key="tiny-evlf-test", vae_gain=10.0)
    return DiffusionContext.for_dataset(backbone, data, batch_size=128)


@pytest.fixture(scope="module")
def trained(dctx, data):
    # with the test split sealed, as every candidate of `bench tune` trains its module: any
    # read of it (the diagnostics used to measure it) raises
    from core.datasets.base import with_sealed_test

    return train_fusion(dctx, with_sealed_test(data, "while a fusion module trains"), SMOKE_OPTIONS)


def small_module(channels: int = 4, text_dim: int = 12, tokens: int = 16) -> FusionModule:
    torch.manual_seed(1)
    return FusionModule(FusionConfig(channels, text_dim, tokens, width=16, heads=2, ffn=32)).eval()


# ---- the module ----

@pytest.mark.parametrize(("channels", "h", "w", "length"), [(4, 4, 4, 1), (4, 8, 8, 16), (3, 2, 6, 5), (16, 3, 3, 77)])
def test_output_has_the_latent_shape(channels, h, w, length):
    module = small_module(channels, 12, h * w)
    z, text = torch.randn(2, channels, h, w), torch.randn(2, length, 12)
    assert module(z, text).shape == z.shape
    mask = torch.ones(2, length, dtype=torch.bool)
    assert module(z, text, mask).shape == z.shape


def test_a_latent_of_another_size_is_refused():
    with pytest.raises(ValueError, match="tied to one resolution"):
        small_module(tokens=16)(torch.randn(1, 4, 8, 8), torch.randn(1, 3, 12))


def test_every_layer_attends_to_one_shared_key_value_tensor():
    module = small_module()
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    hooks = [layer.attn.register_forward_pre_hook(lambda m, args: seen.append(args[:3])) for layer in module.layers]
    z, text = torch.randn(2, 4, 4, 4), torch.randn(2, 5, 12)
    module(z, text)
    for h in hooks:
        h.remove()
    assert len(seen) == len(module.layers) == 2
    (q1, k1, v1), (q2, k2, v2) = seen
    assert k1 is v1 and k2 is k1 and v2 is k1  # one tensor, computed once
    image_tokens, kv = module.keys_values(z, text)
    assert torch.equal(k1, kv) and kv.shape == (2, 16 + 5, 16)
    assert torch.equal(q1, image_tokens) and not torch.allclose(q2, q1)  # only the queries move


def test_text_changes_the_output_and_masked_padding_does_not():
    module = small_module()
    z, text = torch.randn(1, 4, 4, 4), torch.randn(1, 6, 12)
    mask = torch.tensor([[True, True, True, False, False, False]])
    real, padded = text.clone(), text.clone()
    real[0, 1] += 1.0
    padded[0, 4] += 1.0
    with torch.no_grad():
        base = module(z, text)
        assert not torch.allclose(module(z, real), base)
        assert not torch.allclose(module(z, padded), base)  # faithful default: padding is attended to
        masked = module(z, text, mask)
        assert torch.allclose(module(z, padded, mask), masked, atol=1e-6)
        assert not torch.allclose(module(z, real, mask), masked)


def test_projector_maps_latents_to_the_text_width():
    assert [projector_stride(s) for s in (4, 8, 32, 64)] == [1, 2, 4, 4]
    for side in (4, 8, 32):
        assert Projector(4, 384, side)(torch.randn(3, 4, side, side)).shape == (3, 384)


# ---- the loss ----

def test_info_nce_matches_explicit_loops():
    torch.manual_seed(2)
    image, text = torch.randn(5, 3), torch.randn(5, 3)
    labels = torch.tensor([0, 1, 0, 2, 1])
    tau = 0.07

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    u = [unit(r.tolist()) for r in image]
    v = [unit(r.tolist()) for r in text]
    s = [[sum(a * b for a, b in zip(u[i], v[j])) / tau for j in range(5)] for i in range(5)]

    def direction(sim):
        total = 0.0
        for i in range(5):
            denom = sum(math.exp(sim[i][k]) for k in range(5))
            pos = [j for j in range(5) if labels[j] == labels[i]]
            total += -math.log(sum(math.exp(sim[i][j]) / denom for j in pos) / len(pos))
        return total / 5

    transposed = [[s[j][i] for j in range(5)] for i in range(5)]
    expected = 0.5 * (direction(s) + direction(transposed))
    assert multi_positive_info_nce(image, text, labels, tau).item() == pytest.approx(expected, rel=1e-5)


def test_mse_weight_ramps_over_the_first_half():
    assert mse_weight(0, 100) == pytest.approx(0.05)
    assert mse_weight(25, 100) == pytest.approx(0.525)
    assert mse_weight(50, 100) == pytest.approx(1.0)
    assert mse_weight(99, 100) == pytest.approx(1.0)


def test_text_pooling_positions():
    tokens = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool_text(tokens, mask, "last").flatten().tolist() == [3.0, 7.0]
    assert pool_text(tokens, mask, "eot").flatten().tolist() == [1.0, 7.0]


# ---- options ----

@pytest.mark.parametrize(("changes", "message"), [
    ({"latent": "mode"}, "'latent' must be 'mean' or 'sample'"),
    ({"layers": 0}, "'layers' must be at least 1"),
    ({"width": 30, "heads": 4}, "must be divisible by 'heads'"),
    ({"null_text_p": 1.5}, "probability"),
    ({"text_pool": "cls"}, "'text_pool'"),
    ({"train_batch": 1}, "at least 2"),
])
def test_bad_options_are_one_line_errors(changes, message):
    with pytest.raises(BenchError, match=message) as info:
        EVLFOptions(**changes)
    assert "\n" not in str(info.value)


def test_options_parse_from_command_line_strings():
    options = parse_options("evlf", EVLFOptions, {"mask_padding": "true", "layers": "3", "latent": "sample"})
    assert (options.mask_padding, options.layers, options.latent) == (True, 3, "sample")
    with pytest.raises(BenchError, match="latent"):
        parse_options("evlf", EVLFOptions, {"latent": "both"})


# ---- training ----

def test_training_lowers_both_loss_terms(trained):
    curve = trained.diagnostics.curve
    assert curve.step[0] == 0 and curve.step[-1] == SMOKE_OPTIONS.train_steps - 1
    assert curve.tail_mean("mse", 0.2) < 0.5 * curve.mse[0]
    assert curve.tail_mean("info_nce", 0.2) < curve.info_nce[0] - 0.2
    assert curve.mse_weight[0] == pytest.approx(0.05) and curve.mse_weight[-1] == pytest.approx(1.0)


def test_fused_latents_stay_close_to_the_input(trained, data):
    # Predicting the latents' mean scores a relative MSE of 1 and the untrained module ~0.9;
    # after 60 smoke steps it is ~0.2. Below 0.4 means the module reproduces most of each
    # latent's variance, the property the MSE term exists for.
    held = trained.diagnostics.held_out
    assert held.images == min(SMOKE_OPTIONS.diag_images, len(data.val.labels)) and held.split == "val"
    assert held.relative_mse < 0.4
    assert 0.0 <= held.retrieval_raw <= 1.0 and held.retrieval_fused > held.chance


def test_training_is_deterministic_for_a_seed(dctx, data, trained):
    again = train_fusion(dctx, data, SMOKE_OPTIONS)
    assert again.diagnostics.curve == trained.diagnostics.curve
    assert all(torch.equal(again.state_dict[k], v) for k, v in trained.state_dict.items())
    other = train_fusion(dctx, data, dataclasses.replace(SMOKE_OPTIONS, fusion_seed=1, train_steps=5))
    assert not torch.equal(other.state_dict["pos_embed"], trained.state_dict["pos_embed"])


def test_encode_is_scaled_fused_latents(dctx, data, trained):
    images, labels = data.test.float_images()[:10], data.test.labels[:10]
    out = trained.encode(dctx, images, labels)
    assert out.shape == (10, *dctx.backbone.latent_shape)
    text = dctx.backbone.text_encoder.encode([data.prompts[int(y)] for y in labels])
    with torch.no_grad():
        expected = trained.module(dctx.device)(dctx.vae_latents(images), text) * dctx.latent_scale
    assert torch.allclose(out, expected, atol=1e-5)
    other = trained.encode(dctx, images, (labels + 1) % data.num_classes)
    assert not torch.allclose(out, other)
    with pytest.raises(ValueError, match="labels"):
        trained.encode(dctx, images)


def test_cache_trains_once_then_loads_identical_outputs(dctx, data, tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)
    options = dataclasses.replace(SMOKE_OPTIONS, train_steps=10, diag_images=50)
    first = get_fusion(dctx, data, options, cache)
    assert not first.cached

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the module is cached")

    monkeypatch.setattr(training, "train_fusion", no_training)
    second = get_fusion(dctx, data, options, cache)
    assert second.cached and second.key == first.key
    assert second.diagnostics == first.diagnostics
    images, labels = data.test.float_images()[:20], data.test.labels[:20]
    assert torch.equal(first.encode(dctx, images, labels), second.encode(dctx, images, labels))
    # Another option is another module.
    assert training.fusion_key(dctx, data, dataclasses.replace(options, mask_padding=True)) != first.key


def test_plugin_replaces_the_hook(dctx, data, tmp_path):
    cls = PLUGINS.get("evlf")  # importing methods.evlf.plugin registered it
    assert cls is EVLF and METHODS.get("dit").hook_defaults == {"adapt_steps": HOOK_ADAPT_STEPS}
    plugin = cls(dataclasses.replace(SMOKE_OPTIONS, train_steps=5, diag_images=20))
    messages: list[str] = []
    ctx = DistillContext(ArtifactCache(tmp_path), torch.device("cpu"), messages.append)
    assert plugin.diagnostics(dctx, data, ctx) is None
    plugin.prepare(dctx, data, ctx)
    assert any("EVLF fusion trained" in m for m in messages)
    assert "EVLF fusion: step 5/5" in messages
    wrapped = plugin.wrap(dctx, data, ctx)
    assert wrapped.hook_id.startswith("vae-mean+evlf:") and dctx.hook_id == "vae-mean"
    images, labels = data.train.float_images()[:6], data.train.labels[:6]
    fused, plain = wrapped.encode_real(images, labels), dctx.encode_real(images, labels)
    assert fused.shape == plain.shape and not torch.allclose(fused, plain)
    stored = plugin.diagnostics(dctx, data, ctx)
    assert stored is not None and stored.record["steps"] == 5
    assert ("training steps", 5) in [(row.name, row.value) for row in stored.rows]


def test_recomputing_large_attention_maps_leaves_the_gradients_unchanged(monkeypatch):
    """Above RECOMPUTE_ABOVE_BYTES the layers are recomputed in the backward pass (with the same
    dropout draws); the gradients are bit for bit those of keeping the maps."""
    from methods.evlf import fusion

    def gradients() -> torch.Tensor:
        torch.manual_seed(0)
        module = fusion.FusionModule(fusion.FusionConfig(4, 16, 16, width=32, heads=2, ffn=64)).train()
        torch.manual_seed(1)
        module(torch.randn(4, 4, 4, 4), torch.randn(4, 5, 16)).square().mean().backward()
        return torch.cat([p.grad.flatten() for p in module.parameters()])

    kept = gradients()
    calls = []
    monkeypatch.setattr(fusion, "RECOMPUTE_ABOVE_BYTES", 0)
    monkeypatch.setattr(fusion, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    assert torch.equal(gradients(), kept) and len(calls) == 2  # both layers were recomputed


def test_fusion_training_killed_midway_resumes_to_the_same_module(dctx, data, tmp_path):
    """Dropout draws from the global RNG inside the loop: the checkpoint carries it too."""
    from methods.checkpoint import KIND, LoopCheckpoint

    options = dataclasses.replace(SMOKE_OPTIONS, train_steps=12)
    whole = train_fusion(dctx, data, options)
    cache, seen = ArtifactCache(tmp_path), []

    def kill_at_five(phase, step, steps):
        seen.append(step)
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fusion(dctx, data, options, kill_at_five, LoopCheckpoint(cache, "fusion", every_s=0.0))
    resumed = train_fusion(dctx, data, options, lambda *a: seen.append(a[1]), LoopCheckpoint(cache, "fusion", every_s=0.0))
    assert seen == list(range(1, 13))
    assert all(torch.equal(whole.state_dict[k], resumed.state_dict[k]) for k in whole.state_dict)
    assert resumed.diagnostics.curve == whole.diagnostics.curve
    assert not list((tmp_path / KIND).glob("*.safetensors"))
