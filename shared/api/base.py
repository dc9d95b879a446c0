"""The msgspec Struct base every API type derives from, and shared type aliases.

Every type is keyword-only, omits fields equal to their default on encode, and uses
camelCase JSON names (KubeVirt's). Optional fields default to ``None`` (Go's pointer
semantics), so a value the user gave - even ``false``, ``0``, ``{}`` or ``[]`` - survives a
decode/encode round trip; acronyms get explicit names (``podIP``, ``VSOCKCID``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


class ApiStruct(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """Base of all API Structs (see module doc)."""


Quantity = Annotated[
    int | float | str,
    msgspec.Meta(
        description="A Kubernetes resource quantity such as '1Gi', '500m' or 2; "
        "numbers are stored as their string form."
    ),
]
"""A Kubernetes ``resource.Quantity``. The ``int | float | str`` union is the marker the decoder
uses to turn numbers into strings (Kubernetes serializes quantities as strings)."""

IntOrString = int | str
"""Kubernetes ``intstr.IntOrString`` (ports, maxUnavailable)."""

Object = dict[str, Any]
"""A sub-object kept loose (Kubernetes core types the project only stores, e.g. affinity)."""

StrMap = dict[str, str]


def describe(text: str) -> msgspec.Meta:
    """Field documentation carried into the OpenAPI documents (``kubectl explain``)."""
    return msgspec.Meta(description=text)
