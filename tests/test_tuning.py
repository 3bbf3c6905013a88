"""Fair tuning: declared search spaces, `name[tuned]` specs, the study store, the sealed test
split, and `bench tune` through the real CLI and real Ray on `digits`."""
from __future__ import annotations

import json
import os

import pytest
import torch

from benchmark.grid.plan import GridRequest, plan_runs
from benchmark.store.studies import COMPLETE, FAILED, STOPPED, Study, StudyStore, TrialRecord
from benchmark.tuning.search import TuneRequest, default_point, plan_studies
from core.datasets import load_dataset
from core.datasets.base import with_sealed_test
from core.errors import BenchError, SealedSplitError
from core.search_space import Choice, Range
from evaluators.evaluate import score_on_validation
from evaluators.protocols import resolve
from methods.random import random_indices
from methods.registry import TunedChoice, base_of, method_of_run, resolve_method, tuning_space, untuned_label
from test_cli_e2e import PLUGINS, bench

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_sealed_test_split_refuses_every_read_and_keeps_the_fingerprint():
    data = load_dataset("digits")
    sealed = with_sealed_test(data, "while tuning")
    assert sealed.fingerprint() == data.fingerprint() and len(sealed.val) == len(data.val)
    for read in (lambda: sealed.test.images, lambda: sealed.test.labels, lambda: len(sealed.test),
                 lambda: bool(sealed.test), lambda: sealed.test.float_images()):
        with pytest.raises(SealedSplitError, match="sealed while tuning"):
            read()


def test_a_candidate_is_scored_on_validation_without_the_test_split():
    data = with_sealed_test(load_dataset("digits"), "while tuning")
    idx = random_indices(data.train.labels, data.num_classes, 2, 0)
    images, labels = data.train.images[idx].float() / 255, data.train.labels[idx]
    protocol, budget = resolve("dc", "smoke")
    last = protocol.schedule(budget, len(idx), 2, data.num_classes).steps
    seen: list[tuple[int, float]] = []
    score = score_on_validation(images, labels, data, "convnet3", protocol, budget, 0, torch.device("cpu"), 2, 4,
                                lambda step, acc: seen.append((step, acc)))
    assert 1 <= len(seen) <= 4 and seen[-1][0] == last  # at most 4 scorings, the last after the last step
    assert [s for s, _ in seen] == sorted({s for s, _ in seen})
    assert score == seen[-1][1]  # dc reports the last weights
    assert 0 <= score <= 100


def test_spaces_are_declared_as_data_and_specs_fix_part_of_them():
    assert tuning_space(resolve_method("d4m")) == {"strength": Range(0.3, 0.9), "guidance": Range(1.0, 8.0)}
    assert set(tuning_space(resolve_method("d4m+evlf"))) == {"strength", "guidance", "lambda1"}
    assert set(tuning_space(resolve_method("d4m[strength=0.5]"))) == {"guidance"}  # the spec fixes strength
    assert tuning_space(resolve_method("random")) == {}
    assert default_point(resolve_method("d4m"), tuning_space(resolve_method("d4m"))) == {"strength": 0.7,
                                                                                          "guidance": 4.0}
    # a default outside the range: the search starts without it
    assert default_point(resolve_method("d4m[guidance=9]"), {"guidance": Range(1.0, 8.0)}) is None
    assert Range(0.01, 1.0, log=True).text(0.123456) == "0.1235" and Range(1, 9, integer=True).text(3.6) == "4"
    assert Choice(("ddpm", "ddim")).text("ddim") == "ddim"
    with pytest.raises(ValueError):
        Range(1.0, 1.0)


def test_tuned_specs_record_the_choice_and_rebuild_from_the_run_alone():
    assert untuned_label("dit+evlf[tuned]") == "dit+evlf" and untuned_label("dit") is None
    assert base_of("dit+evlf[tuned]") == "dit[adapt_steps=600,tuned]"  # the pair stays tuned on both sides
    for bad, message in (("random[tuned]", "no tunable options"), ("d4m[tuned=1]", "takes no value")):
        with pytest.raises(BenchError, match=message):
            untuned_label(bad) if "random" in bad else resolve_method(bad)
    choice = {"strength": "0.5", "guidance": "2"}
    req = GridRequest(methods=("d4m[recipe=smoke,tuned]",), datasets=("digits",), ipcs=(2,), archs=("convnet3",),
                      budget="smoke", seeds=(0,), references=False)
    runs = plan_runs(req, choices=lambda label, data: TunedChoice(f"study-of-{label}", choice)).runs
    other = plan_runs(req, choices=lambda label, data: TunedChoice("s", {**choice, "strength": "0.6"})).runs
    assert [r.method for r in runs] == ["d4m[recipe=smoke,tuned]"]
    config = json.loads(runs[0].method_config)
    assert config["tuned"] == {"study": "study-of-d4m[recipe=smoke]", "options": {"guidance": "2", "strength": "0.5"}}
    assert config["options"]["strength"] == 0.5 and config["options"]["guidance"] == 2.0
    assert runs[0].run_hash != other[0].run_hash  # another choice is another run
    rebuilt = method_of_run(runs[0].method, runs[0].method_config)  # what a trial does, without the store
    assert rebuilt.config() == config
    with pytest.raises(BenchError, match="no tuning study of 'd4m\\[recipe=smoke\\]' on digits"):
        plan_runs(req, choices=lambda label, data: None)
    with pytest.raises(BenchError, match="sets 'strength', which its tuning study chose"):
        resolve_method("d4m[strength=0.4,tuned]", TunedChoice("s", choice))


def test_a_tuned_row_is_measured_against_the_ceiling_of_the_hook_its_tuning_chose():
    from benchmark.report.relative import relative_scores
    from core.rows import ResultRow

    chosen = {"d4m+evlf[recipe=smoke]": {"strength": "0.5", "lambda1": "0.05"}, "d4m[recipe=smoke]": {"strength": "0.6"}}
    req = GridRequest(methods=("d4m+evlf[recipe=smoke,tuned]",), datasets=("digits",), ipcs=(2,),
                      archs=("convnet3",), budget="smoke", seeds=(0,), references=True)
    runs = plan_runs(req, choices=lambda label, data: TunedChoice(label, chosen[label])).runs
    by_method = {r.method: r for r in runs}
    # the pair is the base tuned on its own; the ceiling decodes through EVLF at the chosen lambda1
    assert set(by_method) == {"d4m+evlf[recipe=smoke,tuned]", "d4m[recipe=smoke,tuned]", "random", "full",
                              "recon+evlf[lambda1=0.05,recipe=smoke]", "recon[recipe=smoke]"}
    accuracy = {"d4m+evlf[recipe=smoke,tuned]": 60.0, "recon+evlf[lambda1=0.05,recipe=smoke]": 64.0,
                "recon[recipe=smoke]": 70.0, "d4m[recipe=smoke,tuned]": 50.0, "random": 66.0, "full": 90.0}
    rows = [ResultRow.ok(r, accuracy[r.method], {}) for r in runs]
    rel = relative_scores(rows)
    assert rel[by_method["d4m+evlf[recipe=smoke,tuned]"].run_hash]["gain_over_recon"] == -4.0
    assert rel[by_method["d4m[recipe=smoke,tuned]"].run_hash]["gain_over_recon"] == -20.0


def _study(key: str, created: float, trials: list[TrialRecord]) -> Study:
    return Study(key, "d4m", "digits", "fp", 2, "convnet3", "dc", "smoke", 0, {"strength": "[0.3, 0.9]"},
                 {"starts_at_defaults": True}, trials, "abc", created)


def test_a_study_chooses_the_best_complete_trial_and_the_store_keeps_it_as_json(tmp_path):
    trials = [TrialRecord(0, {"strength": "0.7"}, [(5, 50.0), (10, 60.0)], COMPLETE, 60.0),
              TrialRecord(1, {"strength": "0.4"}, [(5, 70.0)], STOPPED),  # higher, but stopped early
              TrialRecord(2, {"strength": "0.5"}, [(5, 40.0), (10, 60.0)], COMPLETE, 60.0),  # a tie: the earlier wins
              TrialRecord(3, {"strength": "0.9"}, [], FAILED, error="ValueError: no")]
    study = _study("k1", 1.0, trials)
    assert study.chosen.number == 0 and study.defaults.number == 0 and study.choice().options == {"strength": "0.7"}
    store = StudyStore(tmp_path)
    store.put(study)
    store.put(_study("k2", 2.0, [TrialRecord(0, {"strength": "0.3"}, [(10, 65.0)], COMPLETE, 65.0)]))
    store.put(_study("k3", 3.0, [TrialRecord(0, {"strength": "0.3"}, [], FAILED, error="x")]))  # chose nothing
    assert store.get("k1") == study
    assert store.latest("d4m", "fp").key == "k2" and store.latest("d4m", "other") is None
    raw = (tmp_path / "bench.sqlite3").read_bytes()
    assert b"\x80\x04" not in raw  # JSON text, no pickles


def test_bad_tuning_requests_are_refused_before_any_work():
    for req, message in ((TuneRequest(("d4m",), "digits", 2, 0), "--trials"),
                         (TuneRequest(("d4m[tuned]",), "digits", 2, 3), "tune the spec without"),
                         (TuneRequest(("full",), "digits", 2, 3), "nothing to tune"),
                         (TuneRequest(("d4m",), "digits", 2, 3, protocol="softlabel"), "hard-label"),
                         (TuneRequest(("d4m",), "digits", 2, 3, arch="vgg99"), "unknown arch")):
        with pytest.raises(BenchError, match=message):
            plan_studies(req)
    planned, nothing = plan_studies(TuneRequest(("d4m", "random", "herding"), "digits", 2, 3))
    assert [p.method.label for p in planned] == ["d4m"] and nothing == ["random", "herding"]


def test_bench_tune_never_reads_the_test_split_and_run_uses_the_choice(bench_env, tmp_path):
    store, _ = bench_env
    env = {"BENCH_METHOD_MODULES": "bench_test_methods",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    args = ["--datasets", "digits", "--ipc", "2", "--budget", "smoke"]
    out = bench("tune", "--methods", "d4m[recipe=smoke],peeks-at-test", *args, "--trials", "3", extra_env=env,
                timeout=900)
    assert out.returncode == 1, out.stderr[-3000:]  # one method chose nothing
    assert "Configuration for experiment" not in out.stdout  # Tune's own output is off
    studies = {s.method: s for s in StudyStore(store).all()}
    d4m, peek = studies["d4m[recipe=smoke]"], studies["peeks-at-test"]
    assert len(d4m.trials) == 3 and [t.number for t in d4m.trials] == [0, 1, 2]
    assert d4m.trials[0].options == {"guidance": "4", "strength": "0.7"}  # the search starts at the defaults
    assert all(t.status in (COMPLETE, STOPPED) for t in d4m.trials) and d4m.chosen is not None
    assert all(1 <= len(t.scores) <= 4 for t in d4m.trials)
    # the method that reads the test split fails in every candidate, and nothing is chosen for it
    assert len(peek.trials) == 3 and all(t.status == FAILED and "test split is sealed" in t.error
                                         for t in peek.trials), [t.error for t in peek.trials]
    assert peek.chosen is None
    again = bench("tune", "--methods", "d4m[recipe=smoke]", *args, "--trials", "3", extra_env=env)
    assert again.returncode == 0 and "in the store already" in again.stdout
    assert len(StudyStore(store).all()) == 2

    # the same cheat runs in an ordinary grid (the seal belongs to tuning), and the tuned spec runs its choice
    run = bench("run", "--methods", "d4m[recipe=smoke,tuned],peeks-at-test", *args, "--seeds", "1",
                "--no-references", "--no-leaderboard", extra_env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads(bench("results", "--json", extra_env=env).stdout)}
    assert set(rows) == {"d4m[recipe=smoke,tuned]", "peeks-at-test"}
    config = rows["d4m[recipe=smoke,tuned]"]["config"]["method_config"]
    assert config["tuned"] == {"study": d4m.key, "options": d4m.chosen.options}
    assert config["options"]["guidance"] == float(d4m.chosen.options["guidance"])
    # the tuning page: every study, its trials and a history plot, regenerated byte for byte
    pages = [tmp_path / "a", tmp_path / "b"]
    for out in pages:
        assert bench("leaderboard", "--no-samples", "--out", str(out), extra_env=env).returncode == 0
    page = (pages[0] / "tuning.md").read_text()
    assert f"## {d4m.method} on digits" in page and f"chosen: trial {d4m.chosen.number}" in page
    assert "test split is sealed" in page and "test accuracy" not in page.lower()
    assert "[Tuning studies](tuning.md)" in (pages[0] / "index.md").read_text()
    for name in ["tuning.md", *(p.name for p in (pages[0] / "plots").glob("tuning__*.png"))]:
        sub_path = name if name.endswith(".md") else f"plots/{name}"
        assert (pages[0] / sub_path).read_bytes() == (pages[1] / sub_path).read_bytes()
    assert len(list((pages[0] / "plots").glob("tuning__*.png"))) == 2
    refused = bench("run", "--methods", "herding[tuned]", *args)
    assert refused.returncode == 2 and "no tunable options" in refused.stderr and "Traceback" not in refused.stderr
