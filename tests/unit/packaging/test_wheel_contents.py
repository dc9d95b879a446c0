"""The wheel carries a module behind every console script, and the demo guest's package.

Builds the wheel once (``pip wheel --no-deps``, about a second) and reads it as a zip: every
``[project.scripts]`` entry ``name = "module:function"`` must have ``module``'s file in the wheel
binding ``function`` at top level, and ``guest/`` (imported by the main job from the installed
package) must be there with the files its build reads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("kubevirt_py-*.whl")
    return zipfile.ZipFile(built)


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_file(wheel: zipfile.ZipFile, module: str) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in wheel.namelist():
            return candidate
    return None


@pytest.mark.parametrize("script", sorted(_scripts()))
def test_every_console_script_has_its_function_in_the_wheel(wheel: zipfile.ZipFile, script: str):
    module, _, function = _scripts()[script].partition(":")
    path = _module_file(wheel, module)
    assert path is not None, f"{script}: module {module} is not in the wheel"
    assert function in _top_level_names(wheel.read(path).decode()), f"{script}: {module} has no {function}"


def test_the_wheel_declares_exactly_the_project_scripts(wheel: zipfile.ZipFile):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    declared = {line.split("=", 1)[0].strip() for line in wheel.read(entry_points).decode().splitlines()
                if "=" in line}
    assert declared == set(_scripts())


def test_the_demo_guest_is_packaged_with_its_files(wheel: zipfile.ZipFile):
    names = set(wheel.namelist())
    guest_files = {p.name for p in (ROOT / "guest").iterdir() if p.is_file() and not p.name.endswith(".pyc")}
    assert "demo_guest.py" in guest_files
    assert {f"guest/{name}" for name in guest_files} <= names
