"""Core ``v1`` Node, kept loose: metadata typed, spec and status as given. virt-handler
registers its node here (labels ``kubevirt.io/schedulable``, capacity, heartbeat)."""

from __future__ import annotations

from shared.api.base import ApiStruct, Object
from shared.api.meta import ObjectMeta


class Node(ApiStruct, kw_only=True):
    """A host that runs VMIs."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: Object | None = None
    status: Object | None = None
