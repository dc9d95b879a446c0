"""``coordination.k8s.io/v1`` Lease, used for leader election and heartbeats
(source: k8s.io/api coordination/v1)."""

from __future__ import annotations

from shared.api.base import ApiStruct, Int32
from shared.api.meta import ObjectMeta


class LeaseSpec(ApiStruct, kw_only=True):
    """Holder and timing of a lease; times are RFC 3339 with microseconds."""

    holder_identity: str | None = None
    lease_duration_seconds: Int32 | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: Int32 | None = None
    strategy: str | None = None
    preferred_holder: str | None = None


class Lease(ApiStruct, kw_only=True):
    """A named lease."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: LeaseSpec | None = None
