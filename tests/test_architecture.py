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


# The rooms of `benchmark/` (see its subpackages' docstrings), top to bottom: a room imports
# only rooms below it; rooms of one rank do not import each other.
ROOMS = {"cli": 5, "api": 4, "tuning": 3, "sets": 3, "report": 2, "grid": 2, "cluster": 1, "store": 0,
         "setup_data": 0}


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def all_modules() -> dict[str, Path]:
    return {module_of(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def module_imports() -> dict[str, set[str]]:
    """module -> the project modules it imports, anywhere in its source (``from a import b``
    counts as ``a.b`` where that is a module, else as ``a``)."""
    known = all_modules()
    out: dict[str, set[str]] = {}
    for module, path in known.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".")[: -node.level] if not path.name == "__init__.py" else \
                        module.split(".")[: len(module.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        out[module] = {m for m in found if m in known and m != module}
    return out


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "benchmark" and len(parts) > 1 else None


def test_the_module_checker_resolves_modules_of_a_from_import():
    imports = module_imports()
    assert "benchmark.api" in imports["benchmark.cli.run"]  # `from benchmark import api` (inside a function)
    assert "benchmark.cli.args" in imports["benchmark.cli.run"]  # `from benchmark.cli import args as flags`


def test_each_room_of_benchmark_imports_only_the_rooms_below_it():
    rooms = {room_of(m) for m in all_modules()} - {None}
    assert rooms == set(ROOMS), f"rooms of benchmark/ without a rank (or ranks without a room): {rooms ^ set(ROOMS)}"
    wrong = sorted((m, t) for m, targets in module_imports().items() for t in targets
                   if room_of(m) and room_of(t) and room_of(m) != room_of(t) and ROOMS[room_of(t)] >= ROOMS[room_of(m)])
    assert not wrong, f"imports up or sideways between the rooms of benchmark/: {wrong}"


def test_no_import_circle_between_modules():
    edges = module_imports()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    assert not circles, "modules in an import circle: " + "; ".join(" -> ".join(c) for c in circles)
