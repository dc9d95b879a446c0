"""What an admission run knows besides the object: the operation, the stored object on
UPDATE, cluster settings, whether the caller is KubeVirt itself, the clock and UUID source."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.admission.cluster import DEFAULT_CLUSTER, ClusterConfig


def rfc3339_now() -> str:
    """The current UTC time as Kubernetes writes timestamps (``2026-12-02T07:00:00Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_uuid() -> str:
    """A random (version 4) UUID string."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class AdmissionContext:
    """``operation`` is CREATE or UPDATE; ``old`` the stored object on UPDATE; ``trusted``
    marks KubeVirt's own components (they may set reserved labels, change VMI specs and set a
    migration priority)."""

    operation: str
    old: dict[str, Any] | None = None
    cluster: ClusterConfig = DEFAULT_CLUSTER
    trusted: bool = False
    now: Callable[[], str] = rfc3339_now
    new_uuid: Callable[[], str] = random_uuid
    warnings: list[str] = field(default_factory=list)

    @property
    def is_create(self) -> bool:
        """Whether this is a CREATE."""
        return self.operation == "CREATE"
