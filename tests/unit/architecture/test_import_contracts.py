"""The layer contracts of pyproject.toml ([tool.importlinter]) hold for the tree, and each one
catches the import it forbids: a copy of ``services/`` and ``shared/`` gets one forbidden import
and ``lint-imports`` (as scripts/test.sh runs it) must fail naming the broken contract (others may
break with it: an import from shared into a service also joins the services together)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> list[dict[str, Any]]:
    """The import-linter contracts declared in pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def contract_named_by(kind: str, module: str) -> str:
    """Name of the contract of type ``kind`` that lists ``module`` (independence: ``modules``;
    forbidden: ``forbidden_modules``; protected: ``protected_modules``)."""
    key = {"independence": "modules", "forbidden": "forbidden_modules", "protected": "protected_modules"}[kind]
    (name,) = [c["name"] for c in contracts() if c["type"] == kind and module in c[key]]
    return name


def run_lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``root`` as scripts/test.sh runs it: that tree's pyproject.toml, its
    packages first on the path."""
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    result = run_lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml copied once; each test adds one import to a file copy."""
    root = tmp_path_factory.mktemp("tree")
    for package in ("services", "shared"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


FORBIDDEN_IMPORTS = [
    pytest.param("services/virtctl/main.py", "import libvirt", ("protected", "libvirt"), id="libvirt-in-virtctl"),
    pytest.param("services/virt_controller/admission.py", "import services.virt_api.rest",
                 ("independence", "services.virt_controller"), id="service-imports-service"),
    pytest.param("shared/errors.py", "import services.virt_api", ("forbidden", "services"), id="shared-imports-service"),
    pytest.param("shared/trace_store.py", "import nats", ("protected", "nats"), id="nats-outside-bus-and-store"),
    pytest.param("services/virt_api/request_tracing.py", "from opentelemetry.sdk.trace import TracerProvider",
                 ("protected", "opentelemetry.sdk"), id="otel-sdk-outside-tracing"),
]


@pytest.mark.parametrize(("path", "line", "contract"), FORBIDDEN_IMPORTS)
def test_a_forbidden_import_breaks_its_contract(tree_copy: Path, path: str, line: str, contract: tuple[str, str]):
    target = tree_copy / path
    original = target.read_text()
    target.write_text(original + f"\n{line}  # added by the test\n")
    try:
        result = run_lint_imports(tree_copy)
    finally:
        target.write_text(original)
    name = contract_named_by(*contract)
    assert result.returncode != 0
    assert f"{name} BROKEN" in result.stdout, result.stdout
