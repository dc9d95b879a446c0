"""The documented walkthrough (docs/supply-chain.md) runs as written in a fresh clone: build ->
SBOM -> sign with a key -> signed release manifest -> push to a real registry on loopback ->
pull into a fresh layout -> verify --rebuild with no network -> verified."""
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KUBEVIRT_BUILD_CACHE", Path.home() / ".cache" / "kubevirt-build"))


def _walkthrough() -> str:
    text = (ROOT / "docs" / "supply-chain.md").read_text()
    section = text.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(not (CACHE / "sha256").is_dir(), reason="needs the package cache filled by one networked build")
def test_documented_walkthrough_runs_as_written_in_a_fresh_clone(registry, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, capture_output=True)
    (clone / ".venv").symlink_to((ROOT / ".venv").resolve())  # what ./scripts/install.sh makes
    env = {"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()), "REGISTRY": registry,
           "KUBEVIRT_BUILD_CACHE": str(CACHE),
           # the shared .venv is installed for another checkout: make it import this clone's code
           "PYTHONPATH": f"{clone / 'build'}:{clone}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", _walkthrough()], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "verified"
    checks = [line.split(":")[0] for line in lines[-8:-1]]
    assert checks == ["ok layout", "ok release", "ok signature", "ok sbom", "ok provenance", "ok policy", "ok rebuild"]
    assert any(line.startswith("pushed ") and line.endswith("with 4 referrers") for line in lines)
