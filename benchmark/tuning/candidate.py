"""What one candidate of a tuning study does: distil a set with the candidate's options and
score a student on the validation split, reporting each scoring to Ray Tune (whose ASHA
scheduler may stop it there). The data set's test split is sealed for the whole candidate:
any read of it raises, so nothing the search sees can come from the test split."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from core.datasets import load_dataset
from core.datasets.base import Dataset, with_sealed_test
from core.search_space import Space
from core.spec import NamedSpec
from evaluators import compiling
from core.archs import StudentShape
from evaluators.evaluate import score_on_validation
from evaluators.protocols import resolve
from methods.registry import MethodSpec, resolve_method

SEALED_WHY = "while tuning (candidates are scored on the validation split only)"


@dataclass(frozen=True)
class Candidate:
    """Everything a tuning trial needs besides the drawn options (it travels to the workers)."""

    name: str  # the spec's name, e.g. "d4m+evlf"
    fixed: dict[str, str]  # the options the tuned spec sets itself
    space: dict[str, Space]
    dataset: str
    ipc: int
    arch: str
    protocol: str
    budget: str
    seed: int
    scorings: int
    final_step: int  # the student's last step: its scoring is the candidate's result
    fingerprint: str  # of the data set the driver planned with; every trial checks its own copy
    place: dict[str, Any]  # where trials find the cache and the data (`benchmark.cluster.artifacts.trial_places`)
    threads: int = 1

    def method(self, options: dict[str, str]) -> MethodSpec:
        return resolve_method(NamedSpec(self.name, {**self.fixed, **options}).canonical())

    def option_text(self, drawn: dict[str, Any]) -> dict[str, str]:
        """Drawn values as option text (floats to 4 significant digits)."""
        return {k: self.space[k].text(v) for k, v in sorted(drawn.items())}


def sealed_dataset(name: str) -> Dataset:
    """The data set with its test split sealed (see `core.datasets.base.with_sealed_test`)."""
    return with_sealed_test(load_dataset(name), SEALED_WHY)


def score_candidate(candidate: Candidate, options: dict[str, str], device: torch.device,
                    on_score: Callable[[int, float], None]) -> float:
    """The candidate's validation score (see `evaluators.evaluate.score_on_validation`), on
    whatever node of the cluster it runs: the cache and the data as `TrialPlace` provides them."""
    from benchmark.cluster.artifacts import TrialPlace
    from benchmark.grid.trial import distill_context

    place = TrialPlace.from_config(candidate.place)
    cache = place.cache()
    data = with_sealed_test(place.dataset(candidate.dataset, candidate.fingerprint, cache), SEALED_WHY)
    distiller = candidate.method(options).distiller
    distiller.validate(data, candidate.ipc)
    ctx = distill_context(cache, device)
    distiller.prepare(data, ctx)  # what this candidate's options train (cached by the method)
    dset = distiller.distill(data, candidate.ipc, candidate.seed, ctx)
    protocol, budget = resolve(candidate.protocol, candidate.budget)
    schedule = protocol.schedule(budget, len(dset), candidate.ipc, data.num_classes)
    compile_choice = compiling.choose(candidate.arch, StudentShape.of(data), budget.student_width,
                                      schedule.images_per_step(len(dset)), schedule.steps, device, cache)
    return score_on_validation(dset.images, dset.labels, data, candidate.arch, protocol, budget, candidate.seed,
                               device, candidate.ipc, candidate.scorings, on_score, compile_choice.compiled)


def tuning_trainable(config: dict[str, Any], candidate: Candidate | None = None) -> None:
    """The Ray Tune function trainable: ``config`` holds the drawn options."""
    import ray
    from ray import tune

    torch.set_num_threads(max(1, candidate.threads))
    device = torch.device("cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu")
    options = candidate.option_text(config)
    score_candidate(candidate, options, device, lambda step, acc: tune.report(
        {"val_acc": acc, "step": step, "final": step == candidate.final_step}))
