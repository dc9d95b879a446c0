"""Decoding JSON-ready dicts into the API Structs, Kubernetes style.

One walk over the input, guided by the Struct's type tree, before msgspec validates it:

* unknown fields are collected with their paths (``spec.template.spec.foo``) and removed, so
  the caller can apply Kubernetes' ``fieldValidation`` (Strict / Warn / Ignore);
* ``null`` values are dropped (Go decodes ``null`` as "unset");
* quantities given as JSON numbers (``cpu: 2``) become strings ("2"), as Kubernetes
  serializes ``resource.Quantity``.

Then ``msgspec.convert`` checks types and required fields; its first error becomes a
:class:`FieldErrors` with the field path. HTTP-level errors are built by the caller
(``shared.admission``).
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


_LEAF = ("leaf",)
_QUANTITY = ("quantity",)


def _plan(info: mi.Type, memo: dict[int, tuple[Any, ...]]) -> tuple[Any, ...]:
    """A compiled walk plan for ``info``: ("struct", {json name: plan}), ("list", plan),
    ("dict", plan), ("quantity",) or ("leaf",). Built once per type."""
    info = _struct_of(info)
    if isinstance(info, mi.StructType):
        key = id(info.cls)
        if key in memo:
            return memo[key]
        fields: dict[str, Any] = {}
        plan = ("struct", fields)
        memo[key] = plan  # before recursing: recursive types terminate
        for f in info.fields:
            fields[f.encode_name] = _plan(f.type, memo)
        return plan
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType)):
        item = _plan(info.item_type, memo)
        return _LEAF if item is _LEAF else ("list", item)
    if isinstance(info, mi.DictType):
        value = _plan(info.value_type, memo)
        return ("dict", value)
    if isinstance(info, mi.UnionType) and _is_quantity(info):
        return _QUANTITY
    return _LEAF


@lru_cache(maxsize=None)
def _plan_for(typ: type) -> tuple[Any, ...]:
    return _plan(_type_info(typ), {})


def _clean(value: Any, plan: tuple[Any, ...], path: str, unknown: list[str]) -> Any:
    kind = plan[0]
    if kind == "struct" and isinstance(value, dict):
        fields = plan[1]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            sub = fields.get(key)
            if sub is None:
                unknown.append(_join(path, str(key)))
            elif sub is _LEAF:
                out[key] = item
            else:
                out[key] = _clean(item, sub, _join(path, key), unknown)
        return out
    if kind == "list" and isinstance(value, list):
        return [_clean(item, plan[1], f"{path}[{i}]", unknown) for i, item in enumerate(value)]
    if kind == "dict" and isinstance(value, dict):
        sub = plan[1]
        if sub is _LEAF:
            return {k: v for k, v in value.items() if v is not None}
        return {k: _clean(v, sub, f"{path}[{k}]", unknown) for k, v in value.items() if v is not None}
    if kind == "quantity" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return value


_ERROR = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_NAME = re.compile(r"`([^`]+)`")
_OPENAPI_TYPES = {"int": "integer", "str": "string", "bool": "boolean", "float": "number", "object": "object",
                  "array": "array", "null": "null", "int | float | str": "quantity (string or integer)",
                  "int | str": "integer or string"}
_BOUND = re.compile(r"^Expected `int` (?P<op>[<>])= (?P<limit>-?\d+)$")
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
    bound = _BOUND.match(message)
    if bound:  # a Go int32/int64/uint32 range (shared.api.base): as a CRD schema's minimum/maximum says it
        relation = "less than" if bound["op"] == "<" else "greater than"
        return StatusCause(field=path, message=f"Invalid value: must be {relation} or equal to {bound['limit']}",
                           reason="FieldValueInvalid")
    message = _TYPE_NAME.sub(lambda m: _OPENAPI_TYPES.get(m[1], m[1]), message.replace(" | null`", "`"))
    return StatusCause(field=path, message=f"Invalid value: {message}", reason="FieldValueTypeInvalid")


def decode_object(body: dict[str, Any], typ: type, *, root: str = "") -> Decoded:
    """Decode ``body`` into ``typ``.

    ``root`` prefixes reported paths (for decoding a sub-object). Raises
    :class:`FieldErrors` for a type error or a missing required field."""
    unknown: list[str] = []
    cleaned = _clean(body, _plan_for(typ), root, unknown)
    try:
        struct: Any = msgspec.convert(cleaned, typ)
    except msgspec.ValidationError as exc:
        raise FieldErrors([compute_field_error(exc, root)]) from None
    return Decoded(struct=struct, obj=msgspec.to_builtins(struct), unknown_fields=unknown)


def find_unknown_fields(body: dict[str, Any], typ: type, *, root: str = "") -> list[str]:
    """Paths of the fields in ``body`` that ``typ`` does not declare."""
    unknown: list[str] = []
    _clean(body, _plan_for(typ), root, unknown)
    return unknown


def encode_object(obj: Any) -> dict[str, Any]:
    """A Struct of ``shared.api`` as the JSON-ready dict the store reads and writes: camelCase
    names, fields at their default (None, empty) left out, as the Structs' config says."""
    body: dict[str, Any] = msgspec.to_builtins(obj)
    return body
