"""Content negotiation: request bodies in, response bodies out.

Owns: decoding request bodies by ``Content-Type`` (``application/json`` and ``application/yaml``;
Kubernetes also accepts ``*/*``-less JSON), the body size limit, reading what the client asked for
in ``Accept`` (plain JSON, YAML, or a ``meta.k8s.io`` ``Table``), and encoding JSON/YAML replies
with optional ``Warning`` headers. Patch media types are in :mod:`services.virt_api.patch`; the
limits on what a body may contain (nesting depth, YAML aliases) and the YAML loader are in
:mod:`services.virt_api.safe_decoding`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import yaml
from aiohttp import web

from services.virt_api.safe_decoding import decode_json, find_duplicate_json_fields, load_yaml
from shared.errors import BadRequest, RequestTooLarge, UnsupportedMediaType

#: Largest request body accepted, in bytes (kube-apiserver's limit is 3 MiB for JSON bodies).
MAX_BODY_BYTES = 3 * 1024 * 1024

JSON_TYPES = frozenset({"application/json", ""})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})

_json_encoder = msgspec.json.Encoder()


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type/Accept entry, lower case (``"application/json"``)."""
    return (header or "").split(";", 1)[0].strip().lower()


async def read_body(request: web.Request) -> bytes:
    """The raw request body; RequestTooLarge (413) beyond :data:`MAX_BODY_BYTES`."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body of {request.content_length} bytes is over the limit of {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestTooLarge(f"request body is over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_encodable(doc: Any) -> Any:
    """Return ``doc`` when it can be written back as UTF-8 JSON; BadRequest otherwise. JSON and
    YAML escapes can carry lone UTF-16 surrogates (``"\\ud800"``) that no store can hold."""
    try:
        _json_encoder.encode(doc)
    except UnicodeEncodeError as err:
        raise BadRequest("the body of the request contains invalid Unicode (a lone surrogate escape)") from err
    return doc


def decode_document(raw: bytes, content_type: str | None) -> Any:
    """Decode ``raw`` as JSON or YAML according to ``content_type`` (any JSON value).

    YAML is read by :class:`services.virt_api.safe_decoding.KubernetesYamlLoader` (timestamps
    stay strings, keys become strings, aliases bounded). Raises UnsupportedMediaType (415) for
    other media types and BadRequest (400) for bodies that do not parse (the message says where,
    as kube-apiserver does), that nest deeper than
    :data:`~services.virt_api.safe_decoding.MAX_NESTING_DEPTH` or whose YAML aliases expand too far.
    """
    return _decode(raw, content_type, find_duplicates=False)[0]


def decode_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """Like :func:`decode_document` but the body must be one JSON object (BadRequest otherwise)."""
    return _require_object(decode_document(raw, content_type))


def decode_object_with_duplicates(raw: bytes, content_type: str | None) -> tuple[dict[str, Any], list[str]]:
    """:func:`decode_object` plus the paths of fields given twice in one object
    (``["metadata.name"]``; the last value is the one kept, as in Kubernetes), for
    ``fieldValidation`` Strict and Warn. For JSON this costs a second parse that keeps key
    pairs, so callers under ``fieldValidation=Ignore`` use :func:`decode_object`."""
    doc, duplicates = _decode(raw, content_type, find_duplicates=True)
    return _require_object(doc), duplicates


def _require_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        shown = "empty body" if doc is None else f"a {type(doc).__name__}"
        raise BadRequest(f"the body of the request must be a JSON object, got {shown}")
    return doc


def _decode(raw: bytes, content_type: str | None, *, find_duplicates: bool) -> tuple[Any, list[str]]:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        if not raw.strip():
            return None, []
        try:
            value = decode_json(raw)
        except msgspec.DecodeError as err:
            raise BadRequest(f"the body of the request could not be decoded as JSON: {err}") from err
        check_encodable(value)
        return value, find_duplicate_json_fields(raw) if find_duplicates else []
    if kind in YAML_TYPES:
        try:
            loaded = load_yaml(raw)
        except yaml.YAMLError as err:
            raise BadRequest(f"the body of the request could not be decoded as YAML: {_yaml_reason(err)}") from err
        if len(loaded.documents) > 1:
            raise BadRequest(f"the body of the request holds {len(loaded.documents)} YAML documents; send one")
        value = loaded.documents[0] if loaded.documents else None
        return check_encodable(value), loaded.duplicate_fields
    raise UnsupportedMediaType(
        f'the body of the request was in an unknown format "{kind}" - accepted media types include: '
        "application/json, application/yaml"
    )


def _yaml_reason(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1} column {mark.column + 1}"
    return problem


@dataclass(frozen=True)
class Accept:
    """What a client asked for: ``table`` for a meta.k8s.io Table (version in ``table_version``),
    ``yaml`` for a YAML body; otherwise JSON."""

    table: bool = False
    table_version: str = "v1"
    yaml: bool = False


def parse_accept(header: str | None) -> Accept:
    """Read an ``Accept`` header the way kube-apiserver does for the forms kubectl sends, e.g.
    ``application/json;as=Table;v=v1;g=meta.k8s.io,application/json``: the first acceptable
    entry wins; unknown entries are skipped (JSON is the fallback)."""
    for entry in (header or "").split(","):
        parts = [p.strip() for p in entry.split(";")]
        kind = parts[0].lower()
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and kind == "application/json":
            if params.get("v") in ("v1", "v1beta1"):
                return Accept(table=True, table_version=params["v"])
            continue
        if "as" in params:
            continue  # e.g. PartialObjectMetadata or aggregated discovery: not served, try the next
        if kind in ("application/json", "*/*", "application/*"):
            return Accept()
        if kind in YAML_TYPES:
            return Accept(yaml=True)
    return Accept()


def encode_response(
    body: Any, *, status: int = 200, accept: Accept | None = None, warnings: list[str] | None = None
) -> web.Response:
    """A JSON (or YAML when asked for) response with ``Warning: 299 - "..."`` headers."""
    if accept is not None and accept.yaml:
        resp = web.Response(
            body=yaml.safe_dump(body, sort_keys=False).encode(), status=status, content_type="application/yaml"
        )
    else:
        resp = web.Response(body=_json_encoder.encode(body), status=status, content_type="application/json")
    for text in warnings or ():
        resp.headers.add("Warning", format_warning(text))
    return resp


def encode_json_line(body: Any) -> bytes:
    """One JSON document followed by a newline (watch stream framing)."""
    return _json_encoder.encode(body) + b"\n"


#: Longest warning text sent (kube-apiserver truncates long warnings too).
MAX_WARNING_CHARS = 512


def format_warning(text: str) -> str:
    """RFC 7234 warning value with code 299 as kube-apiserver writes it: ``299 - "text"``.

    Whitespace runs fold to one space; quotes and backslashes are escaped; control and
    non-ASCII characters (which may come from a client's unknown field names) become ``\\uXXXX``
    so a header can never be split or injected; text beyond :data:`MAX_WARNING_CHARS` is cut.
    """
    clean = " ".join(text.split())
    if len(clean) > MAX_WARNING_CHARS:
        clean = clean[:MAX_WARNING_CHARS] + "..."
    out = []
    for ch in clean:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}")
    return '299 - "' + "".join(out) + '"'
