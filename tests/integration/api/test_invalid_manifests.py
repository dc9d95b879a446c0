"""Every manifest in ../shared/conformance/invalid/ is refused over HTTP with the code and field
its header names, sent as YAML and as JSON, and nothing is stored. New files there are picked up
without code changes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shared.api.resources import resource_for_kind
from tests.integration.api.conftest import CONFORMANCE

INVALID = CONFORMANCE / "invalid"


@dataclass(frozen=True)
class Expectation:
    code: int
    fields: tuple[str, ...]
    message_words: tuple[str, ...]


def read_expectation(text: str) -> Expectation:
    """The ``# expect-*`` header lines of a conformance file."""
    code = re.search(r"^# expect-code:\s*(\d+)", text, re.M)
    assert code, "every invalid manifest names its expected code"
    fields = tuple(m.strip() for m in re.findall(r"^# expect-field:\s*(.+)$", text, re.M))
    words = tuple(m.strip() for m in re.findall(r"^# expect-message-contains:\s*(.+)$", text, re.M))
    return Expectation(int(code.group(1)), fields, words)


def collection_url(api, text: str, namespace: str) -> str:
    """The create URL for the manifest's kind (read with a regex: some files are not YAML)."""
    api_version = re.search(r"^apiVersion:\s*(\S+)", text, re.M).group(1)
    kind = re.search(r"^kind:\s*(\S+)", text, re.M).group(1)
    info = resource_for_kind(api_version, kind)
    prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    ns = f"/namespaces/{namespace}" if info.namespaced else ""
    return f"{api.url}{prefix}{ns}/{info.plural}"


def as_json(text: str) -> bytes:
    """The manifest converted to JSON; a file that is not YAML is sent as its raw text."""
    try:
        return json.dumps(yaml.safe_load(text)).encode()
    except yaml.YAMLError:
        return text.encode()


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("encoding", ["yaml", "json"])
def test_invalid_manifest_is_rejected_with_its_code_and_field_and_nothing_is_stored(api, namespace, path: Path,
                                                                                     encoding: str):
    text = path.read_text()
    expect = read_expectation(text)
    url = collection_url(api, text, namespace)
    body = text.encode() if encoding == "yaml" else as_json(text)
    content_type = "application/yaml" if encoding == "yaml" else "application/json"
    session = api.session()

    resp = session.post(url, data=body, headers={"Content-Type": content_type})
    status = resp.json()
    assert (resp.status_code, status["kind"], status["code"]) == (expect.code, "Status", expect.code), resp.text
    causes = {c.get("field") for c in (status.get("details") or {}).get("causes", [])}
    for field in expect.fields:
        assert field in causes, f"{field} not among {sorted(c for c in causes if c)}: {status['message']}"
    for word in expect.message_words:
        assert word in status["message"]

    listed = session.get(url).json()
    assert listed["items"] == []
