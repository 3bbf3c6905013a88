"""Grid expansion: content hashes, one job per distilled set, `full` independent of IPC."""
import json

from benchmark.grid.plan import GridRequest, plan_runs
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


def _published(budget: str = "quick") -> set[tuple]:
    """(run_hash, method, ipc, seed) of the committed store's finished rows of ``dc/budget``, read
    without touching the checkout."""
    import sqlite3
    from pathlib import Path

    import pytest

    from core.datasets.fashion_mnist import DEBIAN_DIR, FILES

    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values()):
        pytest.skip(f"Fashion-MNIST not installed in {DEBIAN_DIR} (make setup installs it)")
    db = Path(__file__).resolve().parents[1] / "leaderboards" / "store" / "bench.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        return set(conn.execute("SELECT run_hash, method, ipc, seed FROM results "
                                "WHERE status = 'ok' AND protocol = 'dc' AND budget = ?", (budget,)).fetchall())


def test_the_parity_grids_plan_exactly_the_dc_paper_rows_of_the_published_store():
    from benchmark.grid.files import load_grid

    planned = {(r.run_hash, r.method, r.ipc, r.seed)
               for name in ("parity", "parity-full") for r in plan_runs(load_grid(name).request).runs}
    assert len(planned) == 3 * 5 + 1 and planned == _published("paper")


def test_the_published_grid_plans_exactly_the_runs_of_the_published_store():
    # The committed store behind leaderboards/ holds grids/published.toml (and grids/tuned.toml) as
    # `make pages` runs them: planning it again must give the same content hashes, or every
    # published row would silently stop matching the code (and be rerun by the next `make pages`).
    from benchmark.grid.files import load_grid

    published = _published()
    planned = {(r.run_hash, r.method, r.ipc, r.seed) for r in plan_runs(load_grid("published").request).runs}
    # the store holds the tuned grid's rows too (`M[tuned]`, and their ceilings); every row under
    # one of the published grid's labels must be one the published grid plans
    labels = {m for _, m, _, _ in planned}
    published = {row for row in published if row[1] in labels}
    assert len(published) == 120 and published == planned
    assert {m for _, m, _, _ in published} >= {"full", "random", "herding", "dit[adapt_steps=600]", "dit+evlf",
                                               "recon", "recon+evlf"}


def test_the_default_grid_is_the_design_cards_job_and_a_part_of_the_published_page():
    from benchmark.grid.files import load_grid

    grid = load_grid("default").request
    assert grid.methods == ("minimax", "minimax+evlf") and grid.ipcs == (10, 50)
    runs = plan_runs(grid).runs
    assert {r.method for r in runs} == {"minimax", "minimax+evlf", "random", "full", "recon", "recon+evlf"}
    assert len(runs) == 33  # 5 methods x 2 IPCs x 3 seeds, and `full` once per seed
    # `make bench` measures rows of the committed page: each of them is there under the same hash
    assert {(r.run_hash, r.method, r.ipc, r.seed) for r in runs} <= _published()


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
    from core.runs import longest_first

    jobs = group_jobs(_plan(methods=("herding[teacher_steps=5]", "random"), ipcs=(1, 10, 5), archs=("convnet3",),
                            references=True))
    order = [(job.method, job.ipc) for job in longest_first(jobs)]
    assert [ipc for _, ipc in order] == [None] * 2 + [10] * 4 + [5] * 4 + [1] * 4  # full (2 seeds) first
    # within one IPC, the grid's order (method, then seed) is kept
    assert [m for m, ipc in order if ipc == 10] == ["herding[teacher_steps=5]"] * 2 + ["random"] * 2


def test_the_tuned_grid_plans_exactly_the_tuned_runs_of_the_published_store():
    # The tuned page's rows were run with the choices of the studies committed beside them:
    # planning the tuned grid from those studies must give the same content hashes.
    from pathlib import Path

    from benchmark.grid.files import load_grid
    from benchmark.store.studies import choices_in

    published = _published()
    committed = Path(__file__).resolve().parents[1] / "leaderboards" / "store"
    planned = {(r.run_hash, r.method, r.ipc, r.seed)
               for r in plan_runs(load_grid("tuned").request, choices_in(committed)).runs}
    tuned = {row for row in published if "tuned" in row[1]}
    assert len(tuned) == 9 * 3 * 3 and tuned == {row for row in planned if "tuned" in row[1]}
    # and every reference and ceiling the tuned rows are measured against is published too
    assert planned <= published
