"""The README's promise that a method (or a plug-in) is one file: the discovery rule on a
temporary package, and the README's own two examples, written into such a package, leave the
grid and leaderboard tests passing while they are registered."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import BenchError
from methods import discover_folder

ROOT = Path(__file__).resolve().parents[1]
DISCOVER = "from pathlib import Path\nfrom methods import discover_folder\n\ndiscover_folder(Path(__file__).parent, __name__)\n"


def readme_examples() -> dict[str, str]:
    """file name -> source of each README code block that starts with ``# methods/<name>.py``."""
    text = (ROOT / "README.md").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"# methods/(\w+\.py)\n.*?(?=```)", text, re.S)}


def package(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    """A package ``name`` under ``tmp_path`` holding ``files`` (relative path -> source)."""
    for rel, source in files.items():
        path = tmp_path / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    sys.path.insert(0, str(tmp_path))
    return tmp_path / name


@pytest.fixture
def on_path():
    saved = list(sys.path)
    yield
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.startswith("rule_")]:
        del sys.modules[name]


def test_the_rule_imports_modules_and_plugin_folders_and_skips_machinery(tmp_path, on_path):
    folder = package(tmp_path, "rule_ok", {
        "__init__.py": "",
        "alpha.py": "LOADED = True\n",
        "_machinery.py": "raise RuntimeError('machinery is never imported by discovery')\n",
        "_helpers/__init__.py": "raise RuntimeError('nor a machinery package')\n",
        "beta/plugin.py": "LOADED = True\n",  # a plug-in folder without __init__.py
        "gamma/__init__.py": "LOADED = True\n",
        "gamma/other.py": "raise RuntimeError('a package imports its own modules')\n",
        "delta/plugin.py": "LOADED = True\n",
        "delta/__init__.py": "",
        "notes.txt": "not Python",
        "empty_folder/README": "no Python here",
    })
    assert discover_folder(folder, "rule_ok") == ["rule_ok.alpha", "rule_ok.beta.plugin", "rule_ok.delta.plugin",
                                                  "rule_ok.gamma"]


@pytest.mark.parametrize(("files", "expected"), [
    ({"loose/x.py": ""}, "holds Python files but neither plugin.py (a plug-in) nor __init__.py"),
    ({"first-images.py": ""}, "'first-images' is not a Python module name; rename it (e.g. 'first_images')"),
])
def test_what_the_rule_cannot_import_is_refused_not_skipped(tmp_path, on_path, files, expected):
    name = f"rule_bad{len(files)}{abs(hash(expected)) % 1000}"
    folder = package(tmp_path, name, {"__init__.py": "", **files})
    with pytest.raises(BenchError, match=re.escape(expected)):
        discover_folder(folder, name)


def test_a_bad_folder_among_the_methods_is_one_line_and_exit_2(tmp_path):
    site = tmp_path / "site"
    package(site, "rule_cli", {"__init__.py": DISCOVER, "loose/x.py": ""})
    env = dict(os.environ, PYTHONPATH=str(site), BENCH_METHOD_MODULES="rule_cli")
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "list", "methods"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "loose holds Python files" in out.stderr


def test_the_readme_examples_registered_leave_the_grid_and_leaderboard_tests_passing(tmp_path):
    examples = readme_examples()
    assert set(examples) == {"first_images.py", "same_hook.py"}
    site = tmp_path / "site"
    package(site, "readme_methods", {"__init__.py": DISCOVER, **examples})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), BENCH_METHOD_MODULES="readme_methods")

    def bench(*args: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "benchmark.cli", *args, "--json"], capture_output=True,
                             text=True, env=env, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)

    assert "first-images" in bench("list", "methods") and "d4m+same-hook" in bench("list", "variants")
    tests = [str(ROOT / "tests" / f) for f in ("test_grid.py", "test_grid_files.py", "test_leaderboard.py")]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                         capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout.splitlines()[-1] and "skipped" not in out.stdout.splitlines()[-1]
