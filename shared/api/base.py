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

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1, extra_json_schema={"format": "int32"})]
"""Go ``int32`` (replicas, probe timings, ports): out-of-range numbers are refused (422)."""

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1, extra_json_schema={"format": "int64"})]
"""Go ``int64`` and ``int`` (seconds, generations): a number Go cannot hold is refused, as
kube-apiserver's decoder refuses it."""

UInt32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1, extra_json_schema={"format": "int32"})]
"""Go ``uint32`` (KubeVirt's CPU ``cores``/``sockets``/``threads``, hyperv ``spinlocks``)."""

UInt64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1, extra_json_schema={"format": "int64"})]
"""Go ``uint64``/``uint`` (boot order, block sizes, ids), capped at 2**63-1: msgspec bounds must
fit an int64, and no KubeVirt field of this kind comes near it."""

IntOrString = int | str
"""Kubernetes ``intstr.IntOrString`` (ports, maxUnavailable)."""

Object = dict[str, Any]
"""A sub-object kept loose (Kubernetes core types the project only stores, e.g. affinity)."""

StrMap = dict[str, str]


def describe(text: str) -> msgspec.Meta:
    """Field documentation carried into the OpenAPI documents (``kubectl explain``)."""
    return msgspec.Meta(description=text)
