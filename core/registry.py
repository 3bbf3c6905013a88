"""Typed name registries (methods, data sets, students, protocols) in the style of timm and lm-eval.

An entry is registered with a decorator, or lazily as a ``"module:attr"`` string so that
listing names does not import heavy code. Duplicate names are refused loudly.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to objects of one kind.

    ``kind`` names the kind in error messages ("method", "dataset", ...).
    ``check`` (optional) validates an entry when it is first resolved.
    """

    def __init__(self, kind: str, check: Callable[[object], bool] | None = None):
        self.kind = kind
        self._check = check
        self._entries: dict[str, T | str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def named(self, name: str) -> Callable[[T], T]:
        """Class decorator: register under ``name`` and set the class's ``name`` attribute to it."""

        def deco(obj: T) -> T:
            obj.name = name  # type: ignore[attr-defined]
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T | str) -> None:
        """Add an entry, or a lazy ``"module:attr"`` reference to one."""
        if not name or name != name.strip():
            raise ValueError(f"invalid {self.kind} name {name!r}")
        if name in self._entries:
            raise ValueError(f"duplicate {self.kind} name '{name}': already registered")
        if self._check is not None and not isinstance(obj, str) and not self._check(obj):
            raise TypeError(f"{self.kind} '{name}' has the wrong type: {obj!r}")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The entry called ``name``; an :class:`UnknownNameError` lists the valid names."""
        try:
            obj = self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            if self._check is not None and not self._check(obj):
                raise TypeError(f"{self.kind} '{name}' has the wrong type: {obj!r}")
            self._entries[name] = obj
        return obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
