"""Budgets of the field's methods (DC, DSA, DM, SRe2L, RDED) as data: each method names, per
budget, the values its loop options take when the spec leaves them unset.

``paper`` is the original code's setting (iterations, batches, learning rates, loops);
``quick`` and ``smoke`` are smaller, and the method's table says by how much. A spec picks one
with ``budget=NAME`` (``dm[budget=quick]``) and may still set any option itself
(``dm[budget=quick,iterations=500]``); the resolved values enter the config, so two specs that
resolve alike still name different rows, as written. This budget is the distillation's; the
student's is the run's ``--budget``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.datasets.base import Dataset
from core.errors import BenchError
from core.options import fill_unset
from methods.base import Distiller

BUDGETS = ("paper", "quick", "smoke")


class BudgetedDistiller(Distiller):
    """A method whose Options have ``budget: str`` and loop options that default to ``None``
    (the budget's value)."""

    budgets: ClassVar[dict[str, dict[str, Any]]] = {}  # budget name -> option values

    @property
    def settings(self) -> Any:
        """The options with every unset value taken from the chosen budget."""
        name = self.options.budget
        if name not in self.budgets:
            raise BenchError(f"method '{self.name}' has no budget '{name}' (its budgets: {', '.join(self.budgets)})")
        return fill_unset(self.options, self.budgets[name],
                          f"method '{self.name}' budget '{name}' sets no {{fields}}; "
                          f"set it in the spec, e.g. {self.name}[{{first}}=...]")

    def validate(self, data: Dataset, ipc: int) -> None:
        super().validate(data, ipc)
        self.settings  # refuses an unknown budget or an option no budget sets

    def config(self) -> dict[str, Any]:
        return {**super().config(), "options": dataclasses.asdict(self.settings)}
