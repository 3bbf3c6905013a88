"""Grid files (`grids/*.toml`): what a named grid holds, how the flags of `bench run` replace its
fields, and every fault of a file as one line and exit code 2."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from benchmark.cli import build_parser, main
from benchmark.grid.files import grid_paths, load_grid
from benchmark.grid.plan import GridRequest
from core.errors import BenchError

ROOT = Path(__file__).resolve().parents[1]


def request_of(*argv: str) -> GridRequest:
    from benchmark.cli.args import grid_request

    return grid_request(build_parser().parse_args(["plan", *argv]))


def write(tmp_path: Path, text: str, name: str = "g.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_shipped_grid_reads_and_says_what_it_is_for(monkeypatch, tmp_path):
    for var in ("BENCH_IMAGEWOOF_ROOT", "BENCH_IMAGENETTE_ROOT", "BENCH_IMAGEIDC_ROOT", "BENCH_IMAGEIDC_CLASSES"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    names = {p.stem for p in grid_paths()}
    assert {"default", "published", "tuned", "imagewoof", "imagenette", "imageidc"} <= names
    for name in names:
        grid = load_grid(name)
        assert grid.description and grid.request.methods, name


def test_list_grids_names_each_file_without_expanding_its_variables(capsys, monkeypatch):
    monkeypatch.delenv("BENCH_IMAGEWOOF_ROOT", raising=False)
    assert main(["list", "grids", "--json"]) == 0
    listed = {g["name"]: g["description"] for g in json.loads(capsys.readouterr().out)}
    assert set(listed) == {p.stem for p in grid_paths()} and "make bench" in listed["default"]


def test_no_grid_means_the_default_grid_and_each_flag_replaces_one_field():
    assert request_of() == load_grid("default").request
    req = request_of("--methods", "random,herding[teacher_steps=5]", "--ipc", "1", "--seeds", "2",
                     "--no-references")
    default = load_grid("default").request
    assert req.methods == ("random", "herding[teacher_steps=5]") and req.ipcs == (1,)
    assert req.seeds == (0, 1) and req.references is False
    assert (req.datasets, req.archs, req.protocol, req.budget) == (default.datasets, default.archs, default.protocol,
                                                                   default.budget)
    assert request_of("--grid", "published", "--references").references is True


def test_a_grid_file_given_by_path_with_options_written_one_way(tmp_path):
    path = write(tmp_path, '''
description = "two seeds of herding"
methods = ["herding[teacher_steps=5 ]", "random"]
datasets = ["digits"]
ipc = [2, 1]
archs = ["convnet3"]
budget = "smoke"
seeds = [4]
references = false
''')
    req = request_of("--grid", path)
    assert req.methods == ("herding[teacher_steps=5]", "random") and req.datasets == ("digits",)
    assert req.ipcs == (1, 2) and req.seeds == (4,) and req.budget == "smoke" and req.protocol == "dc"
    assert request_of("--grid", path, "--seeds", "4").seeds == (0, 1, 2, 3)  # N on the command line: 0..N-1


def test_a_variable_in_a_grid_is_the_environments_value(tmp_path, monkeypatch):
    path = write(tmp_path, 'description = "d"\nmethods = ["random"]\ndatasets = ["imagewoof[root=${WOOF},size=32]"]\n')
    monkeypatch.setenv("WOOF", str(tmp_path / "woof"))
    assert load_grid(path).request.datasets == (f"imagewoof[root={tmp_path / 'woof'},size=32]",)
    monkeypatch.delenv("WOOF")
    with pytest.raises(BenchError, match=r"names \$\{WOOF\}, which is not set; set WOOF first"):
        load_grid(path)
    # a field the command line replaces is not expanded
    assert request_of("--grid", path, "--datasets", "digits").datasets == ("digits",)


@pytest.mark.parametrize(("text", "expected"), [
    ('methods = ["random"]\n', "'description' is missing"),
    ('description = "d"\n', "'methods' is missing"),
    ('description = " "\nmethods = ["random"]\n', "'description' is empty"),
    ('description = "d"\nmethods = ["random"]\nipcs = [1]\n', "unknown key 'ipcs'"),
    ('description = "d"\nmethods = "random"\n', "'methods' must be list, got str"),
    ('description = "d"\nmethods = []\n', "'methods' is an empty list"),
    ('description = "d"\nmethods = [1]\n', "'methods' must be a list of strings"),
    ('description = "d"\nmethods = ["random"]\nipc = [0]\n', "'ipc' must be positive integers"),
    ('description = "d"\nmethods = ["random"]\nipc = ["10"]\n', "'ipc' must be a non-empty list of integers"),
    ('description = "d"\nmethods = ["random"]\nseeds = 0\n', "'seeds' N runs seeds 0..N-1"),
    ('description = "d"\nmethods = ["random"]\nseeds = true\n', "'seeds' must be int or list, got bool"),
    ('description = "d"\nmethods = ["random"]\nreferences = "no"\n', "'references' must be bool, got str"),
    ('description = "d"\nmethods = ["random[\n', "is not valid TOML"),
    ('description = "d"\nmethods = ["random["]\n', "unbalanced '['"),
])
def test_a_bad_grid_file_is_one_line_and_exit_2(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    assert main(["plan", "--grid", path]) == 2
    err = capsys.readouterr().err
    assert expected in err and path in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("grid", "expected"), [
    ("nosuch", "unknown grid 'nosuch' (valid: default,"),
    ("missing.toml", "grid file missing.toml does not exist"),
    ("", "--grid is empty"),
])
def test_an_unknown_grid_is_one_line_and_exit_2(capsys, grid, expected):
    assert main(["run", "--grid", grid]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_method_in_a_grid_is_refused_before_any_work(tmp_path, capsys, bench_env):
    path = write(tmp_path, 'description = "d"\nmethods = ["radnom"]\ndatasets = ["digits"]\n')
    assert main(["run", "--grid", path]) == 2
    assert "unknown method 'radnom'; did you mean 'random'?" in capsys.readouterr().err
    assert not bench_env[0].exists()  # no store was made


def _reported_lines() -> dict[str, list[list[str]]]:
    """The `bench run` argument lists of reported.md, by data set."""
    text = (ROOT / "leaderboards" / "reported.md").read_text()
    out: dict[str, list[list[str]]] = {}
    for command in re.findall(r"`bench run ([^`]+)`", text):
        argv = shlex.split(command)
        dataset = argv[argv.index("--datasets") + 1].split("[")[0]
        out.setdefault(dataset, []).append(argv)
    return out


@pytest.mark.parametrize("dataset", ["imagewoof", "imagenette", "imageidc"])
def test_each_paper_grid_holds_the_columns_of_its_reported_table(dataset, tmp_path, monkeypatch):
    # `bench run --grid D --methods M` is, field for field, the line reported.md prints for column M
    for var in ("BENCH_IMAGEWOOF_ROOT", "BENCH_IMAGENETTE_ROOT", "BENCH_IMAGEIDC_ROOT"):
        monkeypatch.setenv(var, str(tmp_path / "DIR"))
    monkeypatch.setenv("BENCH_IMAGEIDC_CLASSES", str(tmp_path / "FILE"))
    monkeypatch.chdir(tmp_path)  # DIR and FILE of the reported lines resolve to the same paths
    lines = _reported_lines()[dataset]
    grid = load_grid(dataset).request
    columns = [argv[argv.index("--methods") + 1] for argv in lines]
    assert grid.methods == tuple(columns)
    for argv, method in zip(lines, columns):
        assert request_of(*argv) == request_of("--grid", dataset, "--methods", method)
