"""From a grid request to validated run specs: every bad input is refused here, before any work."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core.datasets import load_dataset
from core.errors import BenchError
from core.runs import RunSpec, conditioning_of
from evaluators.archs import ARCHS, StudentShape, build_student
from evaluators.protocols import PROTOCOL_VERSION, resolve
from methods import METHODS, default_methods, resolve_method
from methods.registry import base_of


@dataclass(frozen=True)
class GridRequest:
    """What the user asked for; ``seeds`` None means the budget's default number of seeds."""

    methods: tuple[str, ...] = field(default_factory=default_methods)
    datasets: tuple[str, ...] = ("fashion-mnist",)
    ipcs: tuple[int, ...] = (1, 10, 50)
    archs: tuple[str, ...] = ("convnet3",)
    protocol: str = "dc"
    budget: str = "quick"
    seeds: tuple[int, ...] | None = None
    references: bool = True  # add the `random` and `full` references and each plug-in variant's base row


DEFAULT_GRID = GridRequest()


def reference_methods() -> list[str]:
    """The rows every relative score is measured against: the methods of the reference and baseline groups."""
    return [name for name in METHODS.names() if METHODS.get(name).group in ("reference", "baseline")]


@dataclass
class Plan:
    runs: list[RunSpec]


def check_arch_fits(arch: str, data, width: int | None) -> None:
    """Build the student once on the data set's shape; refuse sizes it cannot take."""
    try:
        build_student(arch, StudentShape.of(data), width=width)
    except ValueError as exc:
        raise BenchError(f"student '{arch}' cannot train on {data.name} ({data.image_size}x{data.image_size}): {exc}") from None


def plan_runs(req: GridRequest) -> Plan:
    """Resolve every name and check every size; raise `BenchError` on the first bad input."""
    protocol, budget = resolve(req.protocol, req.budget)
    for arch in req.archs:
        ARCHS.get(arch)
    methods = {m.label: m for m in (resolve_method(text) for text in req.methods)}
    if req.references:  # the rows relative scores and plug-in differences are measured against
        pairs = [base for label in methods if (base := base_of(label)) is not None]
        for text in dict.fromkeys([*pairs, *reference_methods()]):
            spec = resolve_method(text)
            methods.setdefault(spec.label, spec)
    seeds = req.seeds if req.seeds is not None else tuple(range(budget.seeds))
    if not seeds:
        raise BenchError("--seeds must give at least one seed")
    # descriptions are prose: editing one must not invalidate stored runs
    protocol_config = json.dumps({"protocol": dataclasses.asdict(protocol) | {"budgets": None, "description": None},
                                  "budget": dataclasses.asdict(budget) | {"description": None},
                                  "version": PROTOCOL_VERSION}, sort_keys=True)
    runs: list[RunSpec] = []
    for dataset in req.datasets:
        data = load_dataset(dataset)
        conditioning = conditioning_of(data)
        for arch in req.archs:
            check_arch_fits(arch, data, budget.student_width)
        for label, spec in methods.items():
            ipcs: tuple[int | None, ...] = (None,) if spec.distiller.reference else req.ipcs
            for ipc in ipcs:
                if ipc is not None:
                    spec.distiller.validate(data, ipc)
                for arch in req.archs:
                    for seed in seeds:
                        runs.append(RunSpec(
                            method=label, method_config=json.dumps(spec.distiller.config(), sort_keys=True),
                            dataset=dataset, data_fingerprint=data.fingerprint(), ipc=ipc, arch=arch,
                            protocol=protocol.name, protocol_config=protocol_config, budget=budget.name,
                            seed=seed, conditioning=conditioning,
                        ))
    return Plan(runs)
