"""Decoding JSON-ready dicts into the API Structs, Kubernetes style.

One walk over the input, guided by the Struct's type tree, before msgspec validates it:

* unknown fields are collected with their paths (``spec.template.spec.foo``) and removed, so
  the caller can apply Kubernetes' ``fieldValidation`` (Strict / Warn / Ignore);
* ``null`` values are dropped (Go decodes ``null`` as "unset");
* quantities given as JSON numbers (``cpu: 2``) become strings ("2"), as Kubernetes
  serializes ``resource.Quantity``.

Then ``msgspec.convert`` checks types and required fields; its first error becomes a
:class:`FieldErrors` with the field path. HTTP-level errors are built by the caller
(``services.virt_api.admission``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec
from msgspec import inspect as mi

from shared.api.quantity import format_number
from shared.errors import StatusCause


class FieldErrors(ValueError):
    """The input does not fit the type; ``causes`` name the fields (Kubernetes paths)."""

    def __init__(self, causes: list[StatusCause]) -> None:
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))
        self.causes = causes


@dataclass
class Decoded:
    """Result of :func:`decode_object`: ``struct`` (the typed object), ``obj`` (its JSON-ready
    form, unknown fields removed) and ``unknown_fields`` (paths, input order)."""

    struct: Any
    obj: dict[str, Any]
    unknown_fields: list[str] = field(default_factory=list)


@lru_cache(maxsize=None)
def _type_info(typ: type) -> mi.Type:
    return mi.type_info(typ)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_quantity(info: mi.UnionType) -> bool:
    kinds = {type(t) for t in info.types}
    return {mi.IntType, mi.FloatType, mi.StrType} <= kinds


def _struct_of(info: mi.Type) -> mi.Type:
    """Unwrap ``Optional``/``Annotated`` wrappers down to the informative type."""
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
        elif isinstance(info, mi.UnionType):
            if _is_quantity(info):
                return info
            rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(rest) != 1:
                return info
            info = rest[0]
        else:
            return info


def _clean(value: Any, info: mi.Type, path: str, unknown: list[str]) -> Any:
    info = _struct_of(info)
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in info.fields}
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            spec = fields.get(key)
            if spec is None:
                unknown.append(_join(path, str(key)))
                continue
            out[key] = _clean(item, spec.type, _join(path, key), unknown)
        return out
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType)) and isinstance(value, list):
        return [_clean(item, info.item_type, f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    if isinstance(info, mi.DictType) and isinstance(value, dict):
        return {
            k: _clean(v, info.value_type, f"{path}[{k}]", unknown)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(info, mi.UnionType) and _is_quantity(info):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return format_number(value)
    return value


_ERROR = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_NAME = re.compile(r"`([^`]+)`")
_OPENAPI_TYPES = {"int": "integer", "str": "string", "bool": "boolean", "float": "number", "object": "object",
                  "array": "array", "null": "null", "int | float | str": "quantity (string or integer)",
                  "int | str": "integer or string"}
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


def _path_from_msgspec(raw: str) -> str:
    path = raw[1:] if raw.startswith(".") else raw
    return path.replace("[...]", "")  # msgspec hides map keys; Kubernetes names the map


def compute_field_error(error: msgspec.ValidationError, root: str = "") -> StatusCause:
    """The :class:`StatusCause` for a msgspec validation error (paths without ``$.``)."""
    match = _ERROR.match(str(error))
    assert match is not None  # the pattern matches any string
    message = match["message"]
    path = _join(root, _path_from_msgspec(match["path"] or "")) if match["path"] else root
    missing = _MISSING.match(message)
    if missing:
        return StatusCause(field=_join(path, missing["name"]), message="Required value", reason="FieldValueRequired")
    message = _TYPE_NAME.sub(lambda m: _OPENAPI_TYPES.get(m[1], m[1]), message.replace(" | null`", "`"))
    return StatusCause(field=path, message=f"Invalid value: {message}", reason="FieldValueTypeInvalid")


def decode_object(body: dict[str, Any], typ: type, *, root: str = "") -> Decoded:
    """Decode ``body`` into ``typ``.

    ``root`` prefixes reported paths (for decoding a sub-object). Raises
    :class:`FieldErrors` for a type error or a missing required field."""
    unknown: list[str] = []
    cleaned = _clean(body, _type_info(typ), root, unknown)
    try:
        struct = msgspec.convert(cleaned, typ)
    except msgspec.ValidationError as exc:
        raise FieldErrors([compute_field_error(exc, root)]) from None
    return Decoded(struct=struct, obj=msgspec.to_builtins(struct), unknown_fields=unknown)


def find_unknown_fields(body: dict[str, Any], typ: type, *, root: str = "") -> list[str]:
    """Paths of the fields in ``body`` that ``typ`` does not declare."""
    unknown: list[str] = []
    _clean(body, _type_info(typ), root, unknown)
    return unknown
