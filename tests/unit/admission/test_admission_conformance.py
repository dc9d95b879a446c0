"""Every manifest in ../shared/conformance/invalid/ is rejected with the code and field its
header names, sent as YAML and as JSON; every manifest in kubevirt-examples/ is admitted and
keeps every value the user gave. New files there are picked up without code changes."""

import json
from pathlib import Path

import pytest
import yaml

from services.virt_api.request_body import parse_body
from shared.admission import admit
from shared.api.resources import resource_for_kind
from shared.errors import ApiError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONFORMANCE = PROJECT_ROOT.parent / "shared" / "conformance"
INVALID = sorted((CONFORMANCE / "invalid").glob("*.yaml"))
EXAMPLES = sorted((CONFORMANCE / "kubevirt-examples").glob("*.yaml"))


def read_expectations(path: Path) -> dict[str, list[str]]:
    """The ``# expect-<name>: value`` header lines of a conformance file."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("# expect-") and ":" in line:
            name, value = line[2:].split(":", 1)
            found.setdefault(name.strip(), []).append(value.strip())
    return found


def submit(raw: bytes, content_type: str) -> dict:
    body = parse_body(raw, content_type)
    resource = resource_for_kind(body.get("apiVersion"), body.get("kind"))
    return admit(
        resource, body, operation="CREATE",
        now=lambda: "2026-12-02T00:00:00Z", new_uuid=lambda: "5a9c4e2b-0000-4000-8000-000000000001",
    ).obj


def as_json(raw: bytes) -> bytes:
    """The manifest converted to JSON, or the raw bytes when it is not YAML at all."""
    try:
        return json.dumps(yaml.safe_load(raw)).encode()
    except yaml.YAMLError:
        return raw


def test_conformance_folders_are_present():
    assert len(INVALID) >= 15
    assert len(EXAMPLES) >= 17


@pytest.mark.parametrize("encoding", ["yaml", "json"])
@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_manifest_is_rejected_with_expected_code_and_field(path, encoding):
    expect = read_expectations(path)
    assert "expect-code" in expect, f"{path.name} lacks an expect-code header"
    raw = path.read_bytes()
    if encoding == "yaml":
        request = (raw, "application/yaml")
    else:
        request = (as_json(raw), "application/json")
    with pytest.raises(ApiError) as info:
        submit(*request)
    error = info.value
    status = error.to_status()
    assert status["code"] == int(expect["expect-code"][0])
    fields = [c["field"] for c in status.get("details", {}).get("causes", [])]
    for field in expect.get("expect-field", []):
        assert field in fields, f"{path.name}: {field} not among {fields}"
    for word in expect.get("expect-message-contains", []):
        assert word in status["message"]


def assert_contains(given, admitted, path="$"):
    """Every value the user gave is in the admitted object (defaults may add, never change)."""
    if isinstance(given, dict):
        assert isinstance(admitted, dict), path
        for key, value in given.items():
            assert key in admitted, f"{path}.{key} was dropped"
            assert_contains(value, admitted[key], f"{path}.{key}")
    elif isinstance(given, list):
        assert isinstance(admitted, list) and len(admitted) == len(given), path
        for i, (a, b) in enumerate(zip(given, admitted)):
            assert_contains(a, b, f"{path}[{i}]")
    else:
        assert given == admitted, f"{path}: {given!r} became {admitted!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_kubevirt_example_is_admitted_and_keeps_its_meaning(path):
    raw = path.read_bytes()
    given = yaml.safe_load(raw)
    admitted = submit(raw, "application/yaml")
    assert_contains(given, admitted)
    assert admitted == submit(as_json(raw), "application/json")
