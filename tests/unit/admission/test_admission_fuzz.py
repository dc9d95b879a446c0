"""Property: whatever the body, admission answers with the object or a Kubernetes error
(never another exception), and an admitted object encodes to JSON and decodes again with no
unknown fields."""

from pathlib import Path

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.admission import admit
from shared.api.decoding import decode_object
from shared.api.resources import resource_for_kind
from shared.errors import ApiError

EXAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "kubevirt-examples"
MANIFESTS = [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["1Gi", "500m", "-1", "1e999", "virtio", "ide", "Always", "", "/", "a/../b"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def paths_of(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths_of(value, (*prefix, i))


@st.composite
def mutated_manifests(draw):
    manifest = msgspec.json.decode(msgspec.json.encode(draw(st.sampled_from(MANIFESTS))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in paths_of(manifest) if p and p[0] not in ("apiVersion", "kind")]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    return manifest


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=mutated_manifests(), operation=st.sampled_from(["CREATE", "UPDATE"]))
def test_admission_answers_every_body_with_an_object_or_a_kubernetes_error(body, operation):
    resource = resource_for_kind(body["apiVersion"], body["kind"])
    try:
        result = admit(resource, body, operation=operation, old=body if operation == "UPDATE" else None)
    except ApiError as error:
        assert 400 <= error.code < 500
        msgspec.json.encode(error.to_status())
        return
    msgspec.json.encode(result.obj)
    assert decode_object(result.obj, resource.type).unknown_fields == []
