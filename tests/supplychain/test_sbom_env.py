"""cyclonedx-py describes a Python environment; the result validates as CycloneDX 1.6."""
import json
import venv

from supplychain.sbom import apply_python_env_sbom


def test_python_environment_sbom_lists_the_environments_distributions(tmp_path):
    # a small environment keeps the strict schema check fast; the build uses the real .venv
    env = tmp_path / "env"
    venv.create(env, with_pip=False, system_site_packages=False)
    site = next((env / "lib").glob("python3*/site-packages"))
    dist = site / "demo_pkg-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.2.3\nLicense: MIT\n")
    (dist / "RECORD").write_text("")
    out = apply_python_env_sbom(env / "bin" / "python", tmp_path / "env.cdx.json")
    doc = json.loads(out.read_text())
    assert doc["specVersion"] == "1.6"
    assert [c["purl"] for c in doc["components"]] == ["pkg:pypi/demo-pkg@1.2.3"]
