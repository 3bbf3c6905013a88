"""The decoding-ceiling reference `recon`: random's images through a backbone's hook and back,
added beside every generative method of a grid, and the `gain over recon` it gives each row."""
from __future__ import annotations

import pytest
import torch

from benchmark.report.leaderboard import RECON_COLUMN, build_leaderboards
from benchmark.grid.plan import GridRequest, plan_runs
from benchmark.report.relative import relative_scores
from benchmark.grid.trial import distill_context
from core.artifacts import ArtifactCache
from core.datasets import load_dataset
from methods import resolve_method
from methods.registry import ceiling_of, is_ceiling
from test_leaderboard import board_of, cell, is_bold, series

pytestmark = pytest.mark.usefixtures("one_thread")


def test_recon_decodes_exactly_the_images_random_draws_at_the_same_seed(tmp_path):
    data = load_dataset("digits")
    ctx = distill_context(ArtifactCache(tmp_path / "cache"), torch.device("cpu"))
    recon = resolve_method("recon[recipe=smoke]").distiller
    recon.prepare(data, ctx)
    for seed in (0, 1):
        real = resolve_method("random").distiller.distill(data, 3, seed, ctx)
        out = recon.distill(data, 3, seed, ctx)
        assert out.meta["indices"] == real.meta["indices"] and torch.equal(out.labels, real.labels)
        dctx = recon.context(data, ctx)
        assert torch.allclose(out.images, dctx.decode(dctx.encode_real(real.images, real.labels)), atol=1e-6)
        assert out.images.shape == real.images.shape and 0 <= out.images.min() and out.images.max() <= 1
        assert not torch.equal(out.images, real.images)  # the round trip changes them


def test_each_generative_row_gets_the_ceiling_of_its_backbone_and_plugins():
    assert ceiling_of("d4m") == "recon" and ceiling_of("d4m[strength=0.5,recipe=smoke]") == "recon[recipe=smoke]"
    assert ceiling_of("dit+evlf[lambda1=0.5,adapt_steps=20]") == "recon+evlf[lambda1=0.5]"
    assert ceiling_of("random") is None and ceiling_of("recon") is None and is_ceiling("recon+evlf")
    grid = dict(datasets=("digits",), ipcs=(1,), archs=("convnet3",), budget="smoke", seeds=(0,))
    planned = {r.method for r in plan_runs(GridRequest(methods=("d4m[recipe=smoke]", "mgd3+evlf[recipe=smoke]"),
                                                       **grid)).runs}
    assert {"recon[recipe=smoke]", "recon+evlf[recipe=smoke]", "random", "full"} <= planned
    assert "recon" not in {r.method for r in plan_runs(GridRequest(methods=("herding",), **grid)).runs}
    bare = plan_runs(GridRequest(methods=("d4m[recipe=smoke]",), references=False, **grid)).runs
    assert {r.method for r in bare} == {"d4m[recipe=smoke]"}


def test_gain_over_recon_is_on_the_page_and_recon_is_never_ranked():
    rows = (series("random", 1, [50.0, 52.0]) + series("recon", 1, [60.0, 61.0])
            + series("d4m", 1, [55.0, 56.0]) + series("recon+evlf", 1, [58.0, 58.0])
            + series("d4m+evlf", 1, [57.0, 57.0]))
    rel = relative_scores(rows)
    gains = {r.method: rel[r.run_hash]["gain_over_recon"] for r in rows}
    assert gains["d4m"] == pytest.approx(55.5 - 60.5) and gains["d4m+evlf"] == pytest.approx(57.0 - 58.0)
    assert gains["random"] is None and gains["recon"] is None
    board = board_of(rows)
    assert not is_bold(board, "recon", "IPC 1") and is_bold(board, "d4m+evlf", "IPC 1")
    column = board.detail_columns.index(RECON_COLUMN)
    assert [d[column] for d in board.details if d[0] == "d4m"] == ["-5.0"]
    assert not any("no method beats" in n for n in board.notes)  # recon above random is not a method that beats it
    assert any("what generation itself costs" in n for n in board.notes)
    plain = build_leaderboards(series("random", 1, [50.0]) + series("d4m", 1, [55.0]))[0]
    assert RECON_COLUMN not in plain.detail_columns  # boards without recon rows keep their layout
    assert cell(board, "recon", "IPC 1") == "60.5 ± 0.7 (2)"
