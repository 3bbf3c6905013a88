"""The layering of the packages, read from the imports of every module: `core` at the bottom
imports no other package of the project; `methods` and `evaluators` import only `core` (and
never each other); `benchmark` on top may import all three. No circle between packages."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "methods", "evaluators", "benchmark")
ALLOWED = {
    "core": {"core"},
    "methods": {"core", "methods"},
    "evaluators": {"core", "evaluators"},
    "benchmark": {"core", "methods", "evaluators", "benchmark"},
}


def imported_packages(source: str, module: str) -> set[str]:
    """The project packages a module's source imports, wherever the import stands (top level,
    inside a function, under TYPE_CHECKING); ``module`` resolves relative imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                names = [".".join([*base, node.module or ""])]
            else:
                names = [node.module or ""]
        else:
            continue
        found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> module path -> the project packages it imports."""
    out: dict[str, dict[str, set[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            module = ".".join(rel.with_suffix("").parts)
            out.setdefault(package, {})[str(rel)] = imported_packages(path.read_text(), module)
    return out


def test_the_checker_sees_imports_anywhere_in_a_module():
    source = "import torch\nfrom core.errors import BenchError\n\ndef f():\n    from benchmark.cli import main\n"
    assert imported_packages(source, "core.thing") == {"core", "benchmark"}
    assert imported_packages("from .registry import METHODS\n", "methods.base") == {"methods"}
    assert imported_packages("import evaluators.train as t\n", "methods.x") == {"evaluators"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_one_above_it(package):
    modules = package_imports()[package]
    assert modules, f"no modules found in {package}"
    wrong = {module: sorted(found - ALLOWED[package]) for module, found in modules.items() if found - ALLOWED[package]}
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


def test_no_circle_between_packages():
    edges = {package: set().union(*modules.values()) - {package} for package, modules in package_imports().items()}

    def reaches(start: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt}))
                   for nxt in edges[start])

    circles = [package for package in PACKAGES if reaches(package, package)]
    assert not circles, f"packages in an import circle: {circles} ({edges})"
