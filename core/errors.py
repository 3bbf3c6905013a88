"""User-facing errors: the CLI prints them as one line and exits with code 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The message must be one line that says what is wrong and what to do.
    """


class UnknownNameError(BenchError, KeyError):
    """A name that is not in a registry."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")
        self.kind, self.name, self.valid = kind, name, valid

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataMissingError(BenchError):
    """A data set's files are not where the loader looked."""


class SpecError(BenchError):
    """A malformed command-line spec (IPC list, method options, ...)."""


class SealedSplitError(RuntimeError):
    """Code read a split it must not see (the test split while tuning): a defect of that code."""
