"""Registries and command-line specs."""
import pytest

from core.errors import BenchError, SpecError, UnknownNameError
from core.registry import Registry
from core.spec import parse_named, parse_named_list, parse_positive_ints
from core.archs import ARCHS
from evaluators.protocols import PROTOCOLS
from methods import METHODS, resolve_method
from methods.base import Distiller


def test_duplicate_names_are_refused():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="duplicate thing name 'a'"):
        reg.add("a", 2)


def test_unknown_name_lists_valid_names_and_closest_match():
    with pytest.raises(UnknownNameError) as err:
        METHODS.get("herdin")
    message = str(err.value)
    assert "did you mean 'herding'" in message
    assert "random" in message and "full" in message


def test_lazy_entries_resolve_on_first_use_and_are_type_checked():
    reg = Registry("method", check=lambda o: isinstance(o, type) and issubclass(o, Distiller))
    reg.add("random-lazy", "methods.random:RandomSubset")
    reg.add("not-a-method", "core.spec:parse_named")
    assert reg.get("random-lazy").__name__ == "RandomSubset"
    with pytest.raises(TypeError):
        reg.get("not-a-method")


def test_builtin_registries_hold_the_foundation_entries():
    assert {"random", "herding", "full"} <= set(METHODS.names())
    assert {"convnet3", "convnet3-w32"} <= set(ARCHS.names())
    assert PROTOCOLS.names() == ["dc", "dsa", "idc", "softlabel"]
    assert all(set(PROTOCOLS.get(p).budgets) == {"paper", "quick", "smoke"} for p in PROTOCOLS.names())


def test_named_spec_parsing_and_canonical_form():
    spec = parse_named("herding[teacher_steps=20, b=x]")
    assert spec.name == "herding" and spec.options == {"teacher_steps": "20", "b": "x"}
    assert spec.canonical() == "herding[b=x,teacher_steps=20]"
    names = [s.canonical() for s in parse_named_list("random,herding[teacher_steps=5],full")]
    assert names == ["random", "herding[teacher_steps=5]", "full"]
    with pytest.raises(SpecError):
        parse_named("herding[teacher_steps]")
    with pytest.raises(SpecError):
        parse_named_list("random,herding[a=1")


@pytest.mark.parametrize("bad", ["0", "-1", "1,x", "2.5", ""])
def test_ipc_must_be_positive_integers(bad):
    with pytest.raises(SpecError):
        parse_positive_ints(bad, "--ipc")


def test_method_options_are_typed_and_checked():
    herding = resolve_method("herding[teacher_steps=20]").distiller
    assert herding.options.teacher_steps == 20
    with pytest.raises(BenchError, match="no option 'steps'.*teacher_steps"):
        resolve_method("herding[steps=20]")
    with pytest.raises(BenchError, match="must be int"):
        resolve_method("herding[teacher_steps=many]")
    with pytest.raises(BenchError, match="plug-in"):
        resolve_method("random+evlf")
