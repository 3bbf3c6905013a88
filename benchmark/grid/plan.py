"""From a grid request to validated run specs: every bad input is refused here, before any work."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from core.datasets import load_dataset
from core.errors import BenchError
from core.runs import RunSpec, conditioning_of
from core.archs import ARCHS, StudentShape, build_student
from evaluators.protocols import PROTOCOL_VERSION, Budget, Protocol, resolve
from core.datasets.base import Dataset
from methods import METHODS, resolve_method
from methods.registry import MethodSpec, TunedChoice, base_of, ceiling_of, untuned_label

# (the label of a tuned spec, the data set) -> the choice of its latest study, or None
ChoiceLookup = Callable[[str, Dataset], TunedChoice | None]


@dataclass(frozen=True)
class GridRequest:
    """What the user asked for (a grid file, `grids/*.toml`, with the flags of the command line over
    it); ``seeds`` None means the budget's default number of seeds."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...] = ("fashion-mnist",)
    ipcs: tuple[int, ...] = (1, 10, 50)
    archs: tuple[str, ...] = ("convnet3",)
    protocol: str = "dc"
    budget: str = "quick"
    seeds: tuple[int, ...] | None = None
    # add the `random` and `full` references, each plug-in variant's base row and each generative
    # row's decoding ceiling (`recon` with its backbone and plug-ins)
    references: bool = True


def reference_methods() -> list[str]:
    """The rows every relative score is measured against: the methods of the reference and baseline
    groups (a decoding ceiling comes only with the generative rows it is measured against)."""
    return [name for name in METHODS.names()
            if METHODS.get(name).group in ("reference", "baseline") and not METHODS.get(name).ceiling]


@dataclass
class Plan:
    runs: list[RunSpec]


def check_arch_fits(arch: str, data, width: int | None) -> None:
    """Build the student once on the data set's shape; refuse sizes it cannot take."""
    try:
        build_student(arch, StudentShape.of(data), width=width)
    except ValueError as exc:
        raise BenchError(f"student '{arch}' cannot train on {data.name} ({data.image_size}x{data.image_size}): {exc}") from None


def protocol_config_of(protocol: Protocol, budget: Budget) -> str:
    """`RunSpec.protocol_config`: the protocol and budget as JSON, with the protocol version."""
    # descriptions are prose: editing one must not invalidate stored runs
    return json.dumps({"protocol": dataclasses.asdict(protocol) | {"budgets": None, "description": None},
                       "budget": dataclasses.asdict(budget) | {"description": None},
                       "version": PROTOCOL_VERSION}, sort_keys=True)


def _resolve(text: str, data: Dataset | None, choices: ChoiceLookup | None) -> MethodSpec:
    """A method spec; ``name[tuned]`` with the choice of its latest study on ``data``."""
    plain = untuned_label(text)
    if plain is None:
        return resolve_method(text)
    choice = choices(plain, data) if choices is not None and data is not None else None
    if choice is None:
        where = f" on {data.name}" if data is not None else ""
        raise BenchError(f"no tuning study of '{plain}'{where} in the store; run `bench tune --methods '{plain}' "
                         f"--datasets {data.name if data is not None else 'D'} --ipc N --trials K` first")
    return resolve_method(text, choice)


def grid_methods(req: GridRequest, data: Dataset | None = None,
                 choices: ChoiceLookup | None = None) -> dict[str, MethodSpec]:
    """The methods of the grid on ``data`` by label, with the reference rows and each plug-in
    variant's base row unless ``req.references`` is off."""
    methods = {m.label: m for m in (_resolve(text, data, choices) for text in req.methods)}
    if req.references:  # the rows relative scores and plug-in differences are measured against
        pairs = [base for label in methods if (base := base_of(label)) is not None]
        for text in dict.fromkeys([*pairs, *reference_methods()]):
            spec = _resolve(text, data, choices)
            methods.setdefault(spec.label, spec)
        ceilings = [c for spec in list(methods.values()) if (c := ceiling_of(spec.label, spec.tuned)) is not None]
        for text in dict.fromkeys(ceilings):
            spec = resolve_method(text)
            methods.setdefault(spec.label, spec)
    return methods


def plan_runs(req: GridRequest, choices: ChoiceLookup | None = None) -> Plan:
    """Resolve every name and check every size; raise `BenchError` on the first bad input.
    ``choices`` finds the tuned choice of a ``name[tuned]`` spec (the store's studies)."""
    if not req.methods:
        raise BenchError("the grid names no method; give --methods or a grid file with 'methods'")
    protocol, budget = resolve(req.protocol, req.budget)
    for arch in req.archs:
        ARCHS.get(arch)
    for text in req.methods:  # names and options first, before any data set loads
        if untuned_label(text) is None:
            resolve_method(text)
    seeds = req.seeds if req.seeds is not None else tuple(range(budget.seeds))
    if not seeds:
        raise BenchError("--seeds must give at least one seed")
    protocol_config = protocol_config_of(protocol, budget)
    runs: list[RunSpec] = []
    for dataset in req.datasets:
        data = load_dataset(dataset)
        methods = grid_methods(req, data, choices)
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
                            method=label, method_config=json.dumps(spec.config(), sort_keys=True),
                            dataset=dataset, data_fingerprint=data.fingerprint(), ipc=ipc, arch=arch,
                            protocol=protocol.name, protocol_config=protocol_config, budget=budget.name,
                            seed=seed, conditioning=conditioning,
                        ))
    return Plan(runs)
