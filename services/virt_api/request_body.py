"""Request bodies to objects: JSON or YAML by ``Content-Type``, refusing anything that is not
one object (Kubernetes answers 400 BadRequest; an unsupported media type is 415).

YAML is read as Kubernetes reads it (sigs.k8s.io/yaml), by virt-api's one loader
(:mod:`services.virt_api.safe_decoding`): timestamps stay strings, non-string keys become
strings, and nesting depth and YAML alias expansion are bounded as on the server.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from services.virt_api.safe_decoding import decode_json, load_yaml
from shared.errors import BadRequest, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json", ""})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def _kind_of(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """The object in ``raw``.

    ``content_type`` is the request's ``Content-Type`` (parameters such as ``charset`` are
    ignored; empty means JSON). Raises :class:`BadRequest` for an empty body, a syntax error,
    several YAML documents, a value that is not an object, nesting deeper than
    :data:`services.virt_api.safe_decoding.MAX_NESTING_DEPTH` or excessive YAML aliasing, and
    :class:`UnsupportedMediaType` for other media types."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES and media not in YAML_TYPES:
        raise UnsupportedMediaType(
            f'the body media type "{media}" is not supported; use application/json or application/yaml'
        )
    if not raw.strip():
        raise BadRequest("the request body is empty; send the object as JSON or YAML")
    if media in JSON_TYPES:
        try:
            value = decode_json(raw)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    else:
        try:
            documents = [d for d in load_yaml(raw).documents if d is not None]
        except yaml.YAMLError as exc:
            raise BadRequest(f"the request body is not valid YAML: {' '.join(str(exc).split())}") from None
        if len(documents) != 1:
            raise BadRequest(f"the request body must hold exactly one YAML document, found {len(documents)}")
        value = documents[0]
    if not isinstance(value, dict):
        raise BadRequest(
            f"the request body must be an object (apiVersion, kind, metadata, spec), not {_kind_of(value)}"
        )
    return value
