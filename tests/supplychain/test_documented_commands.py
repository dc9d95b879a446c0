"""Every `kubevirt-build` command line written in the release workflow and the docs parses with
the real command-line definition (right command, existing options, required options given)."""
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from supplychain.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def _invocations(text: str) -> list[list[str]]:
    """kubevirt-build command lines in shell text (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        for part in re.split(r"\|\||&&|;|\|", line):
            m = re.search(r"(?:^|\s)(?:\S*/)?kubevirt-build\s+(.*)$", part)
            if m and not part.lstrip().startswith("#"):
                words = shlex.split(m.group(1).split(" #", 1)[0])
                out.append(words)
    return out


def _check(words: list[str]) -> None:
    name, args = words[0], words[1:]
    assert name in cli.commands, f"no command {name}"
    cmd = cli.commands[name]
    with cmd.make_context(name, list(args)) as ctx:
        assert ctx.params is not None


def _workflow_runs() -> str:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    return "\n".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])


def test_release_workflow_commands_parse():
    calls = _workflow_runs()
    found = _invocations(calls)
    assert [w[0] for w in found] == ["verify-tag", "release", "verify", "push"]
    for words in found:
        _check(words)


@pytest.mark.parametrize("doc", ["docs/supply-chain.md", "SECURITY.md", "docs/cluster.md"])
def test_documented_commands_parse(doc):
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", (ROOT / doc).read_text(), re.S)
    found = _invocations("\n".join(blocks))
    assert found
    for words in found:
        try:
            _check(words)
        except click.UsageError as exc:
            raise AssertionError(f"{doc}: kubevirt-build {' '.join(words)}: {exc}") from None


def test_every_wheel_build_uses_the_one_pinned_hatchling_without_isolation():
    """Same source, same wheel: pyproject pins hatchling exactly, install.sh installs that pin
    into .venv, and every documented or workflow `pip wheel` builds with it (no isolation, which
    would fetch the newest hatchling)."""
    import importlib.metadata
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = [r for r in requires if r.startswith("hatchling")]
    assert len(pins) == 1 and re.fullmatch(r"hatchling==\d+(\.\d+)+", pins[0]), requires
    assert f"hatchling=={importlib.metadata.version('hatchling')}" == pins[0]
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'pip install -q "$hatchling_pin"' in install and ">=" not in install.split("hatchling_pin", 1)[1]
    texts = {p: (ROOT / p).read_text() for p in ("docs/supply-chain.md", "SECURITY.md", "README.md",
                                                 ".github/workflows/release.yml")}
    builds = [(p, line) for p, text in texts.items() for line in re.sub(r"\\\n\s*", " ", text).splitlines()
              if "pip wheel" in line]
    assert builds
    assert [b for b in builds if "--no-build-isolation" not in b[1]] == []


def test_local_builds_name_the_local_builder_and_only_the_workflow_names_itself():
    import socket

    for name in ("build", "release"):
        option = next(p for p in cli.commands[name].params if p.name == "builder_id")
        assert option.default == f"local:{socket.gethostname()}"
    release = next(w for w in _invocations(_workflow_runs()) if w[0] == "release")
    builder = release[release.index("--builder-id") + 1]
    assert builder == "https://github.com/${{ github.repository }}/.github/workflows/release.yml"


@pytest.mark.parametrize("doc", ["docs/supply-chain.md", "SECURITY.md", "docs/cluster.md"])
def test_documented_commands_name_the_installed_tool_by_path(doc):
    """install.sh puts kubevirt-build in .venv/bin, not on PATH: commands say .venv/bin/kubevirt-build."""
    blocks = "\n".join(re.findall(r"```(?:sh|bash|console)?\n(.*?)```", (ROOT / doc).read_text(), re.S))
    bare = [line for line in blocks.splitlines()
            if re.search(r"(?:^|[\s;&|(])kubevirt-build\s", line) and not line.lstrip().startswith("#")]
    assert bare == []


def test_image_specs_name_the_registry_the_release_workflow_publishes_to():
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    registry = doc["jobs"]["release"]["env"]["REGISTRY"]
    for name in ("control-plane", "handler"):
        spec = yaml.safe_load((ROOT / "build" / "images" / f"{name}.yaml").read_text())
        assert spec["repository"] == f"{registry}/{name}"
    assert "registry.example" not in (ROOT / "docs" / "supply-chain.md").read_text() + (ROOT / "SECURITY.md").read_text()


def test_build_section_waits_for_the_service_before_asking_healthz():
    text = (ROOT / "docs" / "supply-chain.md").read_text().split("## Build", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"for i in \$\(seq \d+\); do curl -fsS http://127\.0\.0\.1:18443/healthz && break; sleep", text)
