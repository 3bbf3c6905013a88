"""The method registry: ``@register_method("name")`` on a `Distiller` subclass.

Method specs on the command line are ``name`` or ``name[option=value,...]``, and
``name+plugin[...]`` for a method with plug-ins (`methods.plugins`); the canonical spec
(options sorted) names the leaderboard row and enters the config hash.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import BenchError
from core.registry import Registry
from core.spec import NamedSpec, parse_named
from methods.base import Distiller, option_names, parse_options

if TYPE_CHECKING:
    from methods.plugins import Plugin

METHODS: Registry[type[Distiller]] = Registry(
    "method", check=lambda obj: isinstance(obj, type) and issubclass(obj, Distiller)
)


def register_method(name: str):
    """Class decorator that registers a `Distiller` subclass under ``name``."""
    return METHODS.named(name)


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: the registered name, its options, and the built distiller."""

    spec: NamedSpec
    distiller: Distiller

    @property
    def label(self) -> str:
        if self.spec.name == "external":  # rows name external sets by their name, not their hash
            return f"external:{self.spec.options.get('name', '')}"
        return self.spec.canonical()


def _plugin_classes(names: list[str]) -> list[type[Plugin]]:
    from methods.plugins import PLUGINS

    return [PLUGINS.get(name) for name in names]


def _with_plugins(cls: type[Distiller], plugin_names: list[str], options: dict[str, str]) -> Distiller:
    """``X+P[...]``: each option goes to the plug-in that declares it, the rest to the method;
    a plug-in's defaults for this method apply unless the user set the option."""
    if not cls.needs_encoder:
        raise BenchError(f"method '{cls.name}' has no encoder hook, so plug-in '{plugin_names[0]}' cannot "
                         f"apply to it (plug-ins combine with: {', '.join(encoder_methods()) or 'none'})")
    classes = _plugin_classes(plugin_names)
    if len(set(plugin_names)) != len(plugin_names):
        raise BenchError(f"plug-in repeated in '{cls.name}+{'+'.join(plugin_names)}'")
    base_options = dict(options)
    plugins = []
    for plugin_cls in classes:
        mine = {k: base_options.pop(k) for k in option_names(plugin_cls.Options) if k in base_options}
        plugins.append(plugin_cls(parse_options(plugin_cls.name, plugin_cls.Options, mine, "plug-in")))
    implied: dict[str, str] = {}
    for plugin_cls in classes:
        implied.update(plugin_cls.method_defaults.get(cls.name, {}))
    unknown = sorted(set(base_options) - set(option_names(cls.Options)))
    if unknown:
        valid = sorted(set(option_names(cls.Options)).union(*(option_names(p.Options) for p in classes)))
        raise BenchError(f"'{cls.name}+{'+'.join(plugin_names)}' has no option '{unknown[0]}' "
                         f"(its options: {', '.join(valid)})")
    return cls.with_options({**implied, **base_options}, plugins)


def encoder_methods() -> list[str]:
    """The registered methods a plug-in can combine with."""
    return [name for name in METHODS.names() if METHODS.get(name).needs_encoder]


def resolve_method(text: str) -> MethodSpec:
    """Parse and validate a method spec; errors are one line and name the valid choices."""
    spec = parse_named(text)
    if spec.name.startswith("external:"):
        spec = NamedSpec("external", {"name": spec.name.split(":", 1)[1], **spec.options})
    base, *plugin_names = spec.name.split("+")
    cls = METHODS.get(base)
    if plugin_names:
        if not all(plugin_names):
            raise BenchError(f"empty plug-in name in '{spec.name}' (write method+plugin, e.g. d4m+evlf)")
        return MethodSpec(spec, _with_plugins(cls, plugin_names, spec.options))
    return MethodSpec(spec, cls.with_options(spec.options))
