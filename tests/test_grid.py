"""Grid expansion: content hashes, one job per distilled set, `full` independent of IPC."""
import json

from benchmark.plan import GridRequest, plan_runs
from core.runs import group_jobs


def _plan(**kw):
    base = dict(methods=("random", "full"), datasets=("digits",), ipcs=(1, 5), archs=("convnet3", "convnet3-w32"),
                protocol="dc", budget="smoke", seeds=(0, 1), references=False)
    return plan_runs(GridRequest(**(base | kw))).runs


def test_full_runs_once_per_arch_and_seed_whatever_the_ipcs():
    runs = _plan()
    full = [r for r in runs if r.method == "full"]
    assert len(full) == 2 * 2 and all(r.ipc is None for r in full)
    assert {r.run_hash for r in full} == {r.run_hash for r in _plan(ipcs=(10, 20)) if r.method == "full"}
    assert len([r for r in runs if r.method == "random"]) == 2 * 2 * 2


def test_one_job_per_distilled_set_evaluated_for_every_arch():
    jobs = group_jobs(_plan())
    assert len(jobs) == 2 * 2 + 2  # random: ipc x seed; full: seed
    assert all({r.arch for r in job.runs} == {"convnet3", "convnet3-w32"} for job in jobs)


def test_hashes_depend_on_everything_that_changes_a_result():
    runs = _plan(methods=("random",), archs=("convnet3",))
    assert len({r.run_hash for r in runs}) == len(runs)
    assert {r.run_hash for r in runs} == {r.run_hash for r in _plan(methods=("random",), archs=("convnet3",))}
    other_budget = {r.run_hash for r in _plan(methods=("random",), archs=("convnet3",), budget="quick")}
    assert not other_budget & {r.run_hash for r in runs}
    a = _plan(methods=("herding[teacher_steps=10]",), archs=("convnet3",))
    b = _plan(methods=("herding[teacher_steps=20]",), archs=("convnet3",))
    assert not {r.run_hash for r in a} & {r.run_hash for r in b}
    assert a[0].method == "herding[teacher_steps=10]"


def test_deterministic_methods_share_one_distilled_set_across_seeds():
    job0, job1 = [j for j in group_jobs(_plan(methods=("random",), ipcs=(1,))) if j.ipc == 1]
    cfg = {"method": "x"}
    assert job0.distill_key(cfg, "fp", deterministic=True) == job1.distill_key(cfg, "fp", deterministic=True)
    assert job0.distill_key(cfg, "fp", deterministic=False) != job1.distill_key(cfg, "fp", deterministic=False)


def test_reference_rows_are_added_when_a_grid_needs_them():
    runs = _plan(methods=("herding[teacher_steps=5]",), references=True)
    assert {r.method for r in runs} == {"herding[teacher_steps=5]", "random", "full"}
    assert {r.method for r in _plan(methods=("herding[teacher_steps=5]",))} == {"herding[teacher_steps=5]"}


def test_the_default_grid_holds_every_method_and_variant():
    from benchmark.plan import DEFAULT_GRID
    from methods import METHODS
    from methods.registry import encoder_methods

    built_in = set(METHODS.names()) - {"external", "always-fails", "recon"}
    assert built_in <= set(DEFAULT_GRID.methods)
    # the decoding ceilings come as references of the generative rows
    assert {"recon", "recon+evlf"} <= {r.method for r in plan_runs(DEFAULT_GRID).runs}
    assert {f"{m}+evlf" for m in encoder_methods() if not METHODS.get(m).ceiling} <= set(DEFAULT_GRID.methods)
    assert DEFAULT_GRID.ipcs == (1, 10, 50) and DEFAULT_GRID.datasets == ("fashion-mnist",)


def test_the_default_grid_plans_exactly_the_runs_of_the_published_store():
    # The committed store behind leaderboards/ holds the default grid (quick budget) as run by
    # `make bench`: planning it again must give the same content hashes, or every published
    # row would silently stop matching the code (and be rerun by the next `make bench`).
    import pytest

    import sqlite3
    from pathlib import Path

    from benchmark.plan import DEFAULT_GRID
    from core.datasets.fashion_mnist import DEBIAN_DIR, FILES

    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values()):
        pytest.skip(f"Fashion-MNIST not installed in {DEBIAN_DIR} (make setup installs it)")
    db = Path(__file__).resolve().parents[1] / "leaderboards" / "store" / "bench.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:  # leaves the checkout untouched
        published = set(conn.execute("SELECT run_hash, method, ipc, seed FROM results "
                                     "WHERE status = 'ok' AND protocol = 'dc' AND budget = 'quick'").fetchall())
    planned = {(r.run_hash, r.method, r.ipc, r.seed) for r in plan_runs(DEFAULT_GRID).runs}
    # the board may hold other grids' rows too (the tuned methods, `M[tuned]`, and their ceilings);
    # every row under one of the default grid's labels must be one the default grid plans
    labels = {m for _, m, _, _ in planned}
    published = {row for row in published if row[1] in labels}
    assert len(published) == 120 and published == planned
    assert {m for _, m, _, _ in published} >= {"full", "random", "dit[adapt_steps=600]", "dit+evlf", "recon",
                                               "recon+evlf"}


def test_a_plugin_variant_brings_its_base_row_with_what_the_replaced_hook_implies():
    runs = _plan(methods=("dit+evlf[recipe=smoke]", "d4m+evlf[recipe=smoke,lambda1=0.2]"), archs=("convnet3",),
                 ipcs=(2,), seeds=(0,), references=True)
    assert sorted({r.method for r in runs}) == ["d4m+evlf[lambda1=0.2,recipe=smoke]", "d4m[recipe=smoke]",
                                                "dit+evlf[recipe=smoke]", "dit[adapt_steps=600,recipe=smoke]",
                                                "full", "random", "recon+evlf[lambda1=0.2,recipe=smoke]",
                                                "recon+evlf[recipe=smoke]", "recon[recipe=smoke]"]
    settings = {r.method: json.loads(r.method_config)["options"] for r in runs}
    assert settings["dit+evlf[recipe=smoke]"]["adapt_steps"] == settings["dit[adapt_steps=600,recipe=smoke]"]["adapt_steps"]
    assert {r.method for r in _plan(methods=("dit+evlf",), references=False)} == {"dit+evlf"}



def test_trials_start_with_the_longest_so_the_shortest_end_the_grid():
    from benchmark.runner import longest_first

    jobs = group_jobs(_plan(methods=("herding[teacher_steps=5]", "random"), ipcs=(1, 10, 5), archs=("convnet3",),
                            references=True))
    order = [(job.method, job.ipc) for job in longest_first(jobs)]
    assert [ipc for _, ipc in order] == [None] * 2 + [10] * 4 + [5] * 4 + [1] * 4  # full (2 seeds) first
    # within one IPC, the grid's order (method, then seed) is kept
    assert [m for m, ipc in order if ipc == 10] == ["herding[teacher_steps=5]"] * 2 + ["random"] * 2


def test_the_tuned_grid_plans_exactly_the_tuned_runs_of_the_published_store(tmp_path):
    # The tuned page's rows were run with the choices of the studies committed beside them:
    # planning the tuned grid from those studies must give the same content hashes.
    import shutil
    import sqlite3
    from pathlib import Path

    import pytest

    from benchmark.plan import TUNED_GRID
    from benchmark.studies import choices_in
    from core.datasets.fashion_mnist import DEBIAN_DIR, FILES

    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values()):
        pytest.skip(f"Fashion-MNIST not installed in {DEBIAN_DIR} (make setup installs it)")
    committed = Path(__file__).resolve().parents[1] / "leaderboards" / "store" / "bench.sqlite3"
    shutil.copy(committed, tmp_path / "bench.sqlite3")  # the lookup opens the store: leave the checkout alone
    planned = {(r.run_hash, r.method, r.ipc, r.seed) for r in plan_runs(TUNED_GRID, choices_in(tmp_path)).runs}
    with sqlite3.connect(tmp_path / "bench.sqlite3") as conn:
        published = set(conn.execute("SELECT run_hash, method, ipc, seed FROM results "
                                     "WHERE status = 'ok' AND protocol = 'dc' AND budget = 'quick'").fetchall())
    tuned = {row for row in published if "tuned" in row[1]}
    assert len(tuned) == 9 * 3 * 3 and tuned == {row for row in planned if "tuned" in row[1]}
    # and every reference and ceiling the tuned rows are measured against is published too
    assert planned <= published
