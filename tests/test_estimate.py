"""`bench plan`: the cost model against hand computations, and the command on a real store."""
from __future__ import annotations

import json
import os

import pytest

from benchmark.cli import main
from benchmark.grid.estimate import CostModel, estimate
from benchmark.grid.plan import GridRequest, plan_runs
from benchmark.store.results import ResultStore
from core.artifacts import ArtifactCache
from core.rows import ResultRow
from core.runs import group_jobs
from evaluators.protocols import resolve


def _runs(methods=("random",), ipcs=(1, 4, 10)):
    return plan_runs(GridRequest(methods=methods, datasets=("digits",), ipcs=ipcs, archs=("convnet3",),
                                 budget="smoke", seeds=(0,), references=False)).runs


def _measured(run, distill_s: float, train_s: float, steps: int, test_s: float = 1.0,
              distill_peak: float = 1.0, eval_peak: float = 0.5) -> ResultRow:
    return ResultRow.ok(run, 50.0, {"distill_s": distill_s, "train_s": train_s, "train_steps": steps,
                                    "test_s": test_s, "images": 10 * run.ipc, "device": "cpu",
                                    "distill_peak_rss_gib": distill_peak, "eval_peak_rss_gib": eval_peak})


def test_student_seconds_are_steps_times_the_cost_per_step_interpolated_in_the_batch():
    by_ipc = {r.ipc: r for r in _runs()}
    rows = [_measured(by_ipc[1], 2.0, 10.0, 100), _measured(by_ipc[10], 8.0, 40.0, 100)]
    model = CostModel.from_rows(rows)
    protocol, budget = resolve("dc", "smoke")
    steps = protocol.schedule(budget, 40, 4).steps
    # batch 40 lies 1/3 of the way from 10 (0.1 s/step) to 100 (0.4 s/step): 0.2 s/step
    assert model.train_seconds(by_ipc[4], 40, "cpu") == pytest.approx(steps * 0.2 + 1.0)
    # distillation: 2 s at IPC 1, 8 s at IPC 10 -> 4 s at IPC 4, and along that line beyond
    assert model.distill_seconds("random", "digits", 4, "cpu") == pytest.approx(4.0)
    assert model.distill_seconds("random", "digits", 19, "cpu") == pytest.approx(14.0)
    assert model.distill_seconds("random[x=1]", "digits", 4, "cpu") == pytest.approx(4.0)  # same method
    assert model.distill_seconds("herding", "digits", 4, "cpu") is None  # never measured: unknown
    assert model.train_seconds(by_ipc[4], 40, "cuda") is None  # nor on another device


def test_a_trials_peak_memory_is_its_distillation_or_its_students_whichever_is_larger():
    by_ipc = {r.ipc: r for r in _runs()}
    rows = [_measured(by_ipc[1], 2.0, 10.0, 100, distill_peak=1.5, eval_peak=0.5),
            _measured(by_ipc[10], 8.0, 40.0, 100, distill_peak=3.0, eval_peak=0.7)]
    model = CostModel.from_rows(rows)
    # IPC 4: the smallest measured IPC at or above it is 10 (3.0 GiB); the students' median is 0.6
    assert model.peak_gib("random", by_ipc[4], "cpu") == pytest.approx(3.0)
    assert model.peak_gib("random", by_ipc[1], "cpu") == pytest.approx(1.5)
    assert model.peak_gib(None, by_ipc[4], "cpu") == pytest.approx(0.6)  # set cached: students only
    assert model.peak_gib("herding", by_ipc[4], "cpu") is None  # never measured: unknown
    assert model.peak_gib("random", by_ipc[4], "cuda") is None  # GPU memory is another metric


def test_done_runs_and_cached_sets_cost_nothing(tmp_path):
    runs = _runs()
    by_ipc = {r.ipc: r for r in runs}
    rows = [_measured(by_ipc[1], 2.0, 10.0, 100), _measured(by_ipc[10], 8.0, 40.0, 100)]
    jobs = {j.job.ipc: j for j in estimate(runs, {by_ipc[1].run_hash}, rows, ArtifactCache(tmp_path), "cpu")[0]}
    assert (jobs[1].runs_done, jobs[1].distill_s, jobs[1].train_s) == (1, 0.0, 0)
    assert jobs[4].runs_done == 0 and jobs[4].distill_s == pytest.approx(4.0) and jobs[4].seconds > 4.0
    unknown, _ = estimate(_runs(methods=("herding",)), set(), rows, ArtifactCache(tmp_path), "cpu")
    assert all(j.seconds is None for j in unknown)


def test_the_command_reports_without_running_anything(bench_env, capsys):
    store, cache = bench_env
    with ResultStore(store) as s:
        for run, (d, t) in zip(_runs(ipcs=(1, 10)), ((2.0, 10.0), (8.0, 40.0))):
            s.put(_measured(run, d, t, 100).stamped("abc", {}, 1.0))
    args = ["plan", "--methods", "random", "--datasets", "digits", "--ipc", "1,4,10", "--budget", "smoke",
            "--seeds", "1", "--no-references"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 of 3 runs to do (2 in the store, 0 sets cached)" in out
    # every job is known; the one shared stage (the quality teacher of digits) was never measured
    assert "1 of 1 shared stages to build first: 0 s (1 never measured, not counted)" in out
    assert "teacher convnet3 width 32" in out
    assert "the largest trial peaks at about 1.0 GiB (resident memory)" in out
    with ResultStore(store) as s:
        assert len(s.rows()) == 2  # nothing ran
    assert main(["plan", "--methods", "nosuch", "--datasets", "digits"]) == 2
    assert "unknown method 'nosuch'" in capsys.readouterr().err


def test_trials_start_in_the_runners_order_on_the_free_slot_after_the_shared_stages(tmp_path):
    from benchmark.grid.estimate import JobEstimate, StageEstimate, makespan, plan_totals
    from core.stages import SharedStage

    assert makespan([10.0, 10.0, 10.0], 2) == 20.0 and makespan([30.0, 10.0, 10.0, 10.0], 2) == 30.0
    assert makespan([10.0, 10.0, 10.0, 30.0], 2) == 40.0  # the long one last waits for a slot
    jobs = [JobEstimate(job, 0, False, 1.0, ipc * 10.0 - 1.0)
            for job, ipc in ((j, j.ipc) for j in group_jobs(_runs()))]
    stages = [StageEstimate(SharedStage("a", "digits", "teacher", "k1"), False, 100.0),
              StageEstimate(SharedStage("b", "digits", "teacher", "k2"), True, 0.0),
              StageEstimate(SharedStage("c", "digits", "teacher", None), False, None)]
    totals = plan_totals(jobs, stages, cpus_per_trial=0.5 * (os.cpu_count() or 1), device="cpu")
    # IPC 10 (100 s) starts first, then IPC 4 (40 s) beside it, then IPC 1 (10 s) on the slot IPC 4 frees
    assert totals["trials_at_once"] == 2 and totals["estimated_wall_s"] == pytest.approx(100.0 + 100.0)
    assert (totals["shared_stages"], totals["shared_to_build"], totals["unknown_shared"]) == (3, 2, 1)
    assert totals["estimated_s"] == pytest.approx(150.0 + 100.0)


def test_a_calibration_fills_in_what_the_store_never_measured_and_survives_json(tmp_path):
    from benchmark.grid.calibration import Calibration
    from benchmark.grid.estimate import cost_model

    by_ipc = {r.ipc: r for r in _runs()}
    calibration = Calibration({"cpu": "test"}, "abc", "hand-made", {
        "distill_s": {("random", "digits", "cpu"): [(1, 100.0), (10, 1000.0)],
                      ("herding", "digits", "cpu"): [(1, 5.0)]},
        "shared_s": {("teacher convnet3 width 32, 50 steps", "digits", "cpu"): [7.0]}})  # smoke: 50
    again = Calibration.from_json(json.loads(json.dumps(calibration.to_json())))
    assert again == calibration
    store_rows = [_measured(by_ipc[1], 2.0, 10.0, 100), _measured(by_ipc[10], 8.0, 40.0, 100)]
    model = cost_model(store_rows, again.model())
    assert model.distill_seconds("random", "digits", 4, "cpu") == pytest.approx(4.0)  # the store's own rows win
    assert model.distill_seconds("herding", "digits", 2, "cpu") == pytest.approx(10.0)  # from the calibration
    jobs, stages = estimate(_runs(), set(), store_rows, ArtifactCache(tmp_path), "cpu", again.model())
    [teacher] = stages  # random needs the quality teacher only
    assert (teacher.stage.name, teacher.cached, teacher.seconds) == ("teacher convnet3 width 32, 50 steps", False, 7.0)
    with pytest.raises(ValueError, match="calibration version"):
        Calibration.from_json({**calibration.to_json(), "version": 99})


def test_the_shipped_calibration_loads_and_covers_the_default_grids_shared_stages():
    from benchmark.grid.calibration import shipped

    calibration = shipped()
    assert calibration is not None and calibration.machine["device"] == "cpu" and len(calibration.commit) == 40
    names = {key[0] for key in calibration.tables["shared_s"]}
    assert {"small/small autoencoder", "evlf module", "teacher convnet3 width 32, 1500 steps"} <= names
    assert all(0 < s for values in calibration.tables["shared_s"].values() for s in values)
