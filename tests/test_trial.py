"""The trial body without Ray: every protocol runs end to end on `digits` with `smoke`."""
import pytest
import torch

from benchmark.cluster.artifacts import TrialPlace
from benchmark.grid.plan import GridRequest, plan_runs
from benchmark.grid.trial import execute_job, execute_unit
from core.runs import TrialUnit, group_jobs


def _rows(protocol: str, methods=("random", "full"), cache=None):
    runs = plan_runs(GridRequest(methods=methods, datasets=("digits",), ipcs=(2,), archs=("convnet3",),
                                 protocol=protocol, budget="smoke", seeds=(0,), references=False)).runs
    rows = []
    for job in group_jobs(runs):
        execute_job(job, TrialPlace(str(cache)), torch.device("cpu"),
                    lambda m: rows.append(m["row"].to_json()) if "row" in m else None)
    return rows


@pytest.mark.parametrize("protocol", ["dc", "dsa", "idc", "softlabel"])
def test_protocol_end_to_end(protocol, tmp_path):
    rows = _rows(protocol, cache=tmp_path)
    assert {r["method"] for r in rows} == {"random", "full"}
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for r in rows:
        m = r["metrics"]
        assert r["protocol"] == protocol and 0 <= r["test_acc"] <= 100
        assert m["budget_description"] and m["train_steps"] > 0
        if protocol == "idc":
            assert m["selected_step"] is not None and m["val_acc"] is not None
            # the test set scored at every validation scoring: the selected and the last are two of them
            assert m["test_acc_best_seen"] >= max(r["test_acc"], m["test_acc_last"])
        else:
            assert m["test_acc_last"] == r["test_acc"] and m["test_acc_best_seen"] is None
        if protocol == "softlabel":
            assert m["teacher_test_acc"] is not None
        # the trial's process memory is measured while its students train (and while it distils)
        assert 0.1 < m["eval_peak_rss_gib"] < 24 and 0 < m["eval_peak_anon_gib"] <= m["eval_peak_rss_gib"]
        if r["method"] == "random":
            assert 0.1 < m["distill_peak_rss_gib"] < 24
            assert 0 <= m["recognizability"] <= 100 and 0 <= m["coverage"] <= 100
            assert m["fd_teacher"] >= 0 and m["diversity"] is not None and m["quality_teacher_acc"] > 0
        else:
            assert "recognizability" not in m  # no image metrics for the whole training split


def test_a_bad_distilled_set_is_an_error_row_naming_the_problem(tmp_path, monkeypatch):
    from methods.random import RandomSubset

    real = RandomSubset.distill

    def nan_images(self, data, ipc, seed, ctx):
        dset = real(self, data, ipc, seed, ctx)
        dset.images[0, 0, 0, 0] = float("nan")
        return dset

    monkeypatch.setattr(RandomSubset, "distill", nan_images)
    rows = _rows("dc", methods=("random",), cache=tmp_path)
    assert [r["status"] for r in rows] == ["error"]
    assert "NaN" in rows[0]["error"]


def test_a_trial_refuses_data_other_than_the_planned_in_one_line(tmp_path):
    """Every trial compares the fingerprint of the data it loaded with the plan's."""
    import dataclasses

    runs = plan_runs(GridRequest(methods=("random",), datasets=("digits",), ipcs=(2,), archs=("convnet3",),
                                 protocol="dc", budget="smoke", seeds=(0,), references=False)).runs
    (job,) = group_jobs([dataclasses.replace(r, data_fingerprint="0123456789abcdef") for r in runs])
    rows = []
    execute_job(job, TrialPlace(str(tmp_path)), torch.device("cpu"), lambda m: rows.append(m["row"]) if "row" in m else None)
    assert [r.status for r in rows] == ["error"]
    assert "\n" not in rows[0].error and "but the plan has 0123456789abcdef" in rows[0].error


def test_a_cells_seeds_in_one_trial_give_the_rows_of_separate_trials(tmp_path):
    # What a trial with a GPU does (`bench run` groups a cell's seeds there): the seeds' students
    # trained stacked give the rows, hashes and (within float tolerance) accuracies of separate trials.
    from core.runs import group_units

    runs = plan_runs(GridRequest(methods=("random",), datasets=("digits",), ipcs=(2,), archs=("convnet3",),
                                 protocol="idc", budget="smoke", seeds=(0, 1, 2), references=False)).runs
    place, cpu = TrialPlace(str(tmp_path)), torch.device("cpu")
    (cell,) = group_units(group_jobs(runs), by_cell=True)
    assert len(group_units(group_jobs(runs), by_cell=False)) == 3 and len(cell.jobs) == 3
    stacked, separate = [], []
    execute_unit(cell, place, cpu, lambda m: stacked.append(m["row"]) if "row" in m else None, "always")
    for job in group_jobs(runs):
        execute_job(job, place, cpu, lambda m: separate.append(m["row"]) if "row" in m else None)
    assert [r.run_hash for r in stacked] == [r.run_hash for r in separate] == [r.run_hash for r in runs]
    one_image = 100 / 359  # digits' test split: 359 images
    for a, b in zip(stacked, separate):
        assert a.status == b.status == "ok"
        assert abs(a.test_acc - b.test_acc) <= one_image + 1e-9 and a.metrics["selected_step"] == b.metrics["selected_step"]
        assert a.metrics["student_batching"] == "batched" and a.metrics["student_batching_students"] == 3
        assert b.metrics["student_batching"] == "separate" and b.metrics["student_batching_reason"] == "one student"
    assert len({r.test_acc for r in separate}) > 1  # three seeds, three students
    assert a.metrics["student_compiled"] is False and a.metrics["student_compile_reason"] == "students stacked"


def test_a_compiled_trial_gives_the_rows_of_an_eager_one(tmp_path):
    # `--compile always`: the same run hashes and, within float tolerance, the same students; the
    # rows say which way each student was trained
    runs = plan_runs(GridRequest(methods=("random",), datasets=("digits",), ipcs=(2,), archs=("convnet3",),
                                 protocol="dc", budget="smoke", seeds=(0,), references=False)).runs
    place, cpu = TrialPlace(str(tmp_path)), torch.device("cpu")
    (job,) = group_jobs(runs)
    rows: dict[str, list] = {"always": [], "never": []}
    for policy, out in rows.items():
        execute_unit(TrialUnit((job,)), place, cpu, lambda m, out=out: out.append(m["row"]) if "row" in m else None,
                     compiling_policy=policy)
    (fast,), (eager,) = rows["always"], rows["never"]
    assert fast.run_hash == eager.run_hash and fast.status == eager.status == "ok"
    assert abs(fast.test_acc - eager.test_acc) <= 100 / 359 + 1e-9
    assert fast.metrics["final_loss"] == pytest.approx(eager.metrics["final_loss"], rel=1e-3, abs=1e-4)
    assert fast.metrics["student_compiled"] is True and eager.metrics["student_compiled"] is False
    assert fast.metrics["student_compile_reason"] == "--compile always"
