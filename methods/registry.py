"""The method registry: ``@register_method("name")`` on a `Distiller` subclass.

Method specs on the command line are ``name`` or ``name[option=value,...]``, and
``name+plugin[...]`` for a method with plug-ins (`methods.plugins`); the canonical spec
(options sorted) names the leaderboard row and enters the config hash. What the layers above
need to know of a method (its group, whether it is in the default grid, the base a plug-in
variant is compared with) they ask here, never by name.

``name[tuned]`` is the method with the options a tuning study chose (`benchmark.store.studies`): the
row keeps the short name, its config records the study and the chosen options, so the choice
is in the run hash and a trial rebuilds the method from the config alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.errors import BenchError
from core.options import option_names, parse_options
from core.registry import Registry
from core.search_space import Space
from core.spec import NamedSpec, parse_named
from methods.base import Distiller
from methods.plugins import PLUGINS, Plugin

METHODS: Registry[type[Distiller]] = Registry(
    "method", check=lambda obj: isinstance(obj, type) and issubclass(obj, Distiller)
)
EXTERNAL_PREFIX = "external:"
TUNED = "tuned"  # the spec flag of a method run with its tuned choice


def register_method(name: str):
    """Class decorator that registers a `Distiller` subclass under ``name``."""
    return METHODS.named(name)


@dataclass(frozen=True)
class TunedChoice:
    """What a tuning study chose for a method spec: the study's key and the options (as text)."""

    study: str
    options: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "options": dict(sorted(self.options.items()))}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TunedChoice:
        return cls(str(d["study"]), {str(k): str(v) for k, v in d["options"].items()})


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: the registered name, its options, the built distiller, and for
    ``name[tuned]`` the tuned choice it was built with."""

    spec: NamedSpec
    distiller: Distiller
    tuned: TunedChoice | None = None

    @property
    def label(self) -> str:
        return self.distiller.label(self.spec)

    def config(self) -> dict[str, Any]:
        """The distiller's config, and the tuned choice for a tuned spec (it enters the run hash)."""
        config = self.distiller.config()
        if self.tuned is not None:
            config["tuned"] = self.tuned.to_json()
        return config


def _with_plugins(cls: type[Distiller], plugin_names: list[str], options: dict[str, str]) -> Distiller:
    """``X+P[...]``: each option goes to the plug-in that declares it, the rest to the method;
    the method's own values for a replaced hook apply unless the user set the option."""
    if not cls.needs_encoder:
        raise BenchError(f"method '{cls.name}' has no encoder hook, so plug-in '{plugin_names[0]}' cannot "
                         f"apply to it (plug-ins combine with: {', '.join(encoder_methods()) or 'none'})")
    classes = [PLUGINS.get(name) for name in plugin_names]
    if len(set(plugin_names)) != len(plugin_names):
        raise BenchError(f"plug-in repeated in '{cls.name}+{'+'.join(plugin_names)}'")
    base_options = dict(options)
    plugins: list[Plugin] = []
    for plugin_cls in classes:
        mine = {k: base_options.pop(k) for k in option_names(plugin_cls.Options) if k in base_options}
        plugins.append(plugin_cls(parse_options(plugin_cls.name, plugin_cls.Options, mine, "plug-in")))
    unknown = sorted(set(base_options) - set(option_names(cls.Options)))
    if unknown:
        valid = sorted(set(option_names(cls.Options)).union(*(option_names(p.Options) for p in classes)))
        raise BenchError(f"'{cls.name}+{'+'.join(plugin_names)}' has no option '{unknown[0]}' "
                         f"(its options: {', '.join(valid)})")
    return cls.with_options({**cls.hook_defaults, **base_options}, plugins)


def encoder_methods() -> list[str]:
    """The registered methods a plug-in can combine with."""
    return [name for name in METHODS.names() if METHODS.get(name).needs_encoder]


def _parse(text: str) -> NamedSpec:
    spec = parse_named(text)
    if spec.name.startswith(EXTERNAL_PREFIX):
        spec = NamedSpec("external", {"name": spec.name[len(EXTERNAL_PREFIX):], **spec.options})
    return spec


def _build(name: str, options: dict[str, str]) -> Distiller:
    base, *plugin_names = name.split("+")
    cls = METHODS.get(base)
    if plugin_names:
        if not all(plugin_names):
            raise BenchError(f"empty plug-in name in '{name}' (write method+plugin, e.g. d4m+evlf)")
        return _with_plugins(cls, plugin_names, options)
    return cls.with_options(options)


def resolve_method(text: str, tuned: TunedChoice | None = None) -> MethodSpec:
    """Parse and validate a method spec; errors are one line and name the valid choices.
    ``name[tuned]`` needs ``tuned``, the choice of its study (see `untuned_label`)."""
    spec = _parse(text)
    if TUNED not in spec.options:
        return MethodSpec(spec, _build(spec.name, spec.options))
    if spec.options[TUNED] != "":
        raise BenchError(f"'{TUNED}' takes no value: write {spec.name}[{TUNED}], not '{text.strip()}'")
    if tuned is None:
        raise BenchError(f"'{text.strip()}' needs the choice of a tuning study (bench tune), and none was given")
    fixed = {k: v for k, v in spec.options.items() if k != TUNED}
    clash = sorted(set(fixed) & set(tuned.options))
    if clash:
        raise BenchError(f"'{text.strip()}' sets '{clash[0]}', which its tuning study chose")
    return MethodSpec(spec, _build(spec.name, fixed | tuned.options), tuned)


def is_tuned(label: str) -> bool:
    """Whether a row's label names a method run with its tuned choice (``name[tuned]``)."""
    return TUNED in _parse_safe(label).options


def without_tuned(label: str) -> str:
    """The label with its ``tuned`` flag dropped (``dit[adapt_steps=600,tuned]`` ->
    ``dit[adapt_steps=600]``): the row a tuned row is the tuned version of."""
    spec = _parse_safe(label)
    if TUNED not in spec.options:
        return label
    return NamedSpec(spec.name, {k: v for k, v in spec.options.items() if k != TUNED}).canonical()


def untuned_label(text: str) -> str | None:
    """For ``name[tuned,...]``: the label of the spec that was tuned (the same without the flag),
    whose study holds the choice; None for a spec without the flag. Refuses a method with
    nothing to tune."""
    if TUNED not in _parse(text).options:  # a malformed spec raises here, with its message
        return None
    plain = resolve_method(without_tuned(text))
    if not tuning_space(plain):
        raise BenchError(f"method '{plain.label}' has no tunable options, so it has no tuned choice: write "
                         f"'{plain.label}'")
    return plain.label


def tuning_space(method: MethodSpec) -> dict[str, Space]:
    """What a tuning of ``method`` searches: the tunable options of the method and its plug-ins,
    less those its spec fixes (``dit[adapt_steps=600]`` is tuned with 600 adaptation steps)."""
    space = dict(method.distiller.tunable)
    for plugin in method.distiller.plugins:
        space.update(plugin.tunable)
    return {k: v for k, v in space.items() if k not in method.spec.options}


def method_of_run(label: str, method_config: str | dict[str, Any]) -> MethodSpec:
    """The method of a planned run: its label, with the tuned choice its recorded config holds
    (a trial rebuilds ``name[tuned]`` from the run alone, without the study store)."""
    config = json.loads(method_config) if isinstance(method_config, str) else method_config
    return resolve_method(label, tuned_of(config))


def method_group(label: str) -> str:
    """The ranking group of a row's method label (one of `methods.base.GROUPS`); a method this
    installation no longer knows is "other"."""
    try:
        return METHODS.get(_parse(label).name.split("+")[0]).group
    except (BenchError, ValueError):
        return "other"


def base_of(label: str) -> str | None:
    """The label of the row a plug-in variant is compared with, or None for a label without
    plug-ins: the spec without its last plug-in (as that plug-in declares) but with the values
    the method takes when a plug-in replaces its hook, so that the pair differs only by the
    plug-in (``dit+evlf`` is compared with ``dit[adapt_steps=600]``, not with plain ``dit``)."""
    try:
        spec = _parse(label)
    except BenchError:
        return None
    if "+" not in spec.name:
        return None
    try:
        plugin = PLUGINS.get(spec.name.rsplit("+", 1)[1])
        base = plugin.base_spec(spec)
        method = METHODS.get(base.name.split("+")[0])
    except BenchError:
        return None
    if "+" not in base.name:  # the hook is plain again: keep what the replaced hook implied
        base = NamedSpec(base.name, {**method.hook_defaults, **base.options})
    return base.canonical()


def ceiling_of(label: str, tuned: TunedChoice | None = None) -> str | None:
    """The label of the decoding-ceiling row a row is measured against (``d4m+evlf`` ->
    ``recon+evlf``), or None for a method without one. A ``name[tuned]`` row's ceiling takes the
    options its tuning chose (``d4m+evlf[tuned]`` that chose lambda1=0.2 -> ``recon+evlf[lambda1=0.2]``)."""
    try:
        spec = _parse(label)
        options = {k: v for k, v in spec.options.items() if k != TUNED} | (tuned.options if tuned else {})
        ceiling = METHODS.get(spec.name.split("+")[0]).ceiling_spec(NamedSpec(spec.name, options))
        return None if ceiling is None else resolve_method(ceiling.canonical()).label
    except BenchError:
        return None


def tuned_of(method_config: dict[str, Any]) -> TunedChoice | None:
    """The tuned choice a row's recorded method config holds, if any."""
    tuned = method_config.get("tuned")
    return TunedChoice.from_json(tuned) if tuned else None


def is_ceiling(label: str) -> bool:
    """Whether a row is a decoding-ceiling reference (never ranked as a method)."""
    try:
        return METHODS.get(_parse(label).name.split("+")[0]).ceiling
    except BenchError:
        return False


def plugin_names(labels: list[str]) -> list[str]:
    """The plug-ins used by any of ``labels``, sorted."""
    return sorted({part for label in labels for part in _parse_safe(label).name.split("+")[1:]})


def _parse_safe(label: str) -> NamedSpec:
    try:
        return _parse(label)
    except BenchError:
        return NamedSpec(label)
