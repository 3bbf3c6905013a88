"""Adding a method or a plug-in is one file or folder and nothing else: built-ins are found by
scanning `methods/`, third-party ones through the entry-point group ``evlf_bench.methods``
(as a distribution installed with pip declares them). The test writes such a distribution
into a temporary folder and sees its method and plug-in in `bench list`, in a grid file
that names them (and in no other), in a real `bench run` (Ray workers find it too) and on the leaderboard."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from methods import METHODS
from methods.plugins import PLUGINS

EXTRA = '''
"""A third-party method and plug-in, registered with one decorator each."""
import torch

from core.distilled import DistilledSet
from methods.base import Distiller
from methods.plugins import Plugin, register_plugin
from methods.registry import register_method


@register_method("first-images")
class FirstImages(Distiller):
    """The first IPC training images of each class."""

    group = "selection"
    selects_real = True
    deterministic = True

    def distill(self, data, ipc, seed, ctx):
        idx = torch.cat([data.train.indices_of(c)[:ipc] for c in range(data.num_classes)])
        return DistilledSet(data.train.float_images()[idx], data.train.labels[idx].clone())


@register_plugin("same-hook")
class SameHook(Plugin):
    """Replaces the hook by an equal one."""

    def wrap(self, dctx, data, ctx):
        return dctx.replace_hook(dctx.encode_real, "same")
'''

LEADERBOARD = '''
import json, sys
from benchmark.report.leaderboard import build_leaderboards, render_markdown
from core.rows import ResultRow

rows = []
for i, (method, acc) in enumerate([("random", 20.0), ("random", 22.0), ("first-images", 30.0), ("first-images", 31.0),
                                   ("d4m", 40.0), ("d4m", 41.0), ("d4m+same-hook", 45.0), ("d4m+same-hook", 47.0)]):
    rows.append(ResultRow(f"h{i}", "ok", method, "digits", 1, "convnet3", "dc", "smoke", i % 2, acc, {}, {}))
print(render_markdown(build_leaderboards(rows)[0]))
'''


@pytest.fixture
def distribution(tmp_path) -> dict[str, str]:
    """A folder holding the package `bench_extra` and its distribution metadata with an entry
    point, as `pip install` leaves them; the environment puts it on the path."""
    site = tmp_path / "site"
    (site / "bench_extra").mkdir(parents=True)
    (site / "bench_extra" / "__init__.py").write_text(textwrap.dedent(EXTRA))
    info = site / "bench_extra-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-extra\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[evlf_bench.methods]\nextra = bench_extra\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def run(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=dict(os.environ, **env),
                          timeout=timeout)


def bench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run("-m", "benchmark.cli", *args, env=env)


def test_builtin_methods_and_plugins_are_found_by_scanning_the_package():
    assert {"random", "herding", "full", "external", "dit", "d4m", "minimax", "mgd3"} <= set(METHODS.names())
    assert "evlf" in PLUGINS.names()


def test_a_method_and_a_plugin_from_an_installed_distribution_join_every_list(distribution, bench_env, tmp_path):
    lists = {what: json.loads(bench("list", what, "--json", env=distribution).stdout)
             for what in ("methods", "plugins", "variants")}
    assert "first-images" in lists["methods"] and "same-hook" in lists["plugins"]
    assert {"d4m+same-hook", "mgd3+same-hook", "d4m+evlf"} <= set(lists["variants"])
    assert not any(m.startswith(("first-images+", "external+")) for m in lists["variants"])  # no encoder hook
    # without the distribution on the path, none of it is there
    bare = json.loads(bench("list", "variants", "--json", env={}).stdout)
    assert "d4m+same-hook" not in bare
    # and it joins a grid by one line of a grid file, no grid it is not written into
    grid = tmp_path / "mine.toml"
    grid.write_text('description = "mine"\nmethods = ["first-images", "d4m+same-hook"]\ndatasets = ["digits"]\n'
                    'ipc = [2]\nbudget = "smoke"\nseeds = 1\n')
    planned = json.loads(bench("plan", "--grid", str(grid), "--json", env=distribution).stdout)
    methods = {job["job"].split(" · ")[0] for job in planned["jobs"]}
    assert methods == {"first-images", "d4m+same-hook", "d4m", "random", "full", "recon", "recon+same-hook"}
    default = json.loads(bench("plan", "--json", env=distribution).stdout)
    assert not any(job["job"].startswith(("first-images", "d4m+same-hook")) for job in default["jobs"])

    out = bench("run", "--methods", "first-images", "--datasets", "digits", "--ipc", "2", "--seeds", "1",
                "--budget", "smoke", "--no-references", env=distribution)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(bench("results", "--json", env=distribution).stdout)
    assert [(r["method"], r["status"], r["metrics"]["images"]) for r in rows] == [("first-images", "ok", 20)]

    page = run("-c", LEADERBOARD, env=distribution)
    assert page.returncode == 0, page.stderr[-2000:]
    main_table = page.stdout.split("### Relative scores")[0]
    lines = [line for line in main_table.splitlines() if line.startswith("| ")][1:]  # below the header
    order = [line.split("|")[1].strip() for line in lines]
    assert order == ["random", "first-images", "d4m", "d4m+same-hook"]
    assert "Δ +5.5" in lines[-1] and "'+same-hook'" in page.stdout  # paired with its base, as the plug-in declares


def test_the_environment_variable_loads_a_module_as_well(distribution, tmp_path):
    env = {"PYTHONPATH": distribution["PYTHONPATH"]}
    site = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    for info in site.glob("*.dist-info"):  # no entry point this time: only the variable names the module
        (info / "entry_points.txt").unlink()
    assert "first-images" not in json.loads(bench("list", "methods", "--json", env=env).stdout)
    named = json.loads(bench("list", "methods", "--json", env={**env, "BENCH_METHOD_MODULES": "bench_extra"}).stdout)
    assert "first-images" in named


def test_a_broken_entry_point_is_one_line_and_exit_2(distribution, tmp_path):
    site = Path(distribution["PYTHONPATH"].split(os.pathsep)[0])
    next(site.glob("*.dist-info")).joinpath("entry_points.txt").write_text("[evlf_bench.methods]\nextra = no_such_module\n")
    out = bench("list", "methods", env=distribution)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no_such_module" in out.stderr and len(out.stderr.strip().splitlines()) == 1
