"""`bench list`: the registered names of one registry, or the named grid files."""
from __future__ import annotations

import argparse
import json

WHAT = ("methods", "variants", "plugins", "grids", "datasets", "archs", "protocols", "budgets")


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered names")
    p.add_argument("what", choices=WHAT, help="grids: the named grid files (`bench run --grid NAME`)")
    p.add_argument("--json", action="store_true")


def _grids(as_json: bool) -> None:
    from benchmark.grid.files import grid_descriptions

    grids = grid_descriptions()
    if as_json:
        print(json.dumps([{"name": name, "description": text} for name, text in grids], indent=2))
        return
    width = max((len(name) for name, _ in grids), default=0)
    print("\n".join(f"{name:<{width}}  {text}" for name, text in grids))


def _budgets(as_json: bool) -> None:
    from evaluators.protocols import PROTOCOLS

    items = [{"protocol": p, "budget": b.name, "epochs": b.epochs, "full_steps": b.full_steps,
              "seeds": b.seeds, "student_width": b.student_width, "description": b.description}
             for p in PROTOCOLS.names() for b in PROTOCOLS.get(p).budgets.values()]
    if as_json:
        print(json.dumps(items, indent=2))
    else:
        for it in items:
            print(f"{it['protocol']}/{it['budget']}: {it['description']}")


def _names(what: str) -> list[str]:
    from core.datasets import dataset_names
    from core.archs import ARCHS
    from evaluators.protocols import PROTOCOLS
    from methods import METHODS
    from methods.plugins import PLUGINS
    from methods.registry import encoder_methods

    def variants() -> list[str]:  # every method a plug-in combines with, written as it is run
        return [f"{m}+{p}" for p in PLUGINS.names() for m in encoder_methods()]

    return {"methods": METHODS.names, "datasets": dataset_names, "archs": ARCHS.names,
            "protocols": PROTOCOLS.names, "plugins": PLUGINS.names, "variants": variants}[what]()


def execute(args: argparse.Namespace) -> int:
    if args.what == "grids":
        _grids(args.json)
    elif args.what == "budgets":
        _budgets(args.json)
    else:
        names = _names(args.what)
        print(json.dumps(names) if args.json else "\n".join(names))
    return 0
