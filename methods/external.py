"""`external:<name>`: a distilled set made elsewhere (a file a paper released, or `bench export`).

`bench eval` reads and checks the file, then places it in the artifact cache under the key
its content hash gives; trials find it there like any cached distilled set. The set does not
depend on the run seed: seeds vary only the student.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.datasets.base import Dataset
from core.errors import BenchError
from core.spec import NamedSpec
from methods.base import DistillContext, DistilledSet, Distiller
from methods.registry import EXTERNAL_PREFIX, register_method


@dataclass(frozen=True)
class ExternalOptions:
    name: str = ""
    sha256: str = ""  # content hash of the images and labels


@register_method("external")
class ExternalSet(Distiller):
    Options = ExternalOptions
    group = "external"
    deterministic = True

    def label(self, spec: NamedSpec) -> str:
        return f"{EXTERNAL_PREFIX}{self.options.name}"  # rows name external sets by name, not hash

    def distill(self, data: Dataset, ipc: int, seed: int, ctx: DistillContext) -> DistilledSet:
        raise BenchError(f"the external set '{self.options.name}' is not in this machine's artifact cache; "
                         "run 'bench eval --data PATH' where the cache is shared with the trials")
