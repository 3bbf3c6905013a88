"""Every `bench` command of the README runs as written: each one parses, and the cheap ones
(those that train no student) run to exit code 0 on an empty store and cache."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from benchmark.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
CHEAP = ("list", "plan", "show", "export")  # they train no student and start no Ray


def readme_commands() -> list[list[str]]:
    """The argument lists of the `bench` lines of the README's code blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split(" # ")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("bench ")]


def test_the_readme_has_a_quick_start_of_every_main_command():
    commands = {argv[0] for argv in readme_commands()}
    assert {"list", "plan", "run", "leaderboard", "show", "eval"} <= commands


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_each_readme_command_parses(argv):
    build_parser().parse_args(argv)


def test_the_cheap_readme_commands_run_as_written(bench_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in readme_commands():
        if argv[0] in CHEAP:
            assert main(argv) == 0, (argv, capsys.readouterr().err[-2000:])
            ran.append(argv[0])
    assert set(ran) == set(CHEAP)
    # the file the README's `bench eval` line reads is the one its `bench export` line wrote
    evaluated = next(argv for argv in readme_commands() if argv[0] == "eval")
    assert (tmp_path / evaluated[evaluated.index("--data") + 1]).is_file()
