"""Admission of the ``KubeVirt`` object (the installation's configuration): the ranges of
``spec.configuration.migrations`` that virt-migration reads at run time.

Sources: KubeVirt ``staging/src/kubevirt.io/api/core/v1/types.go`` (MigrationConfiguration: the
``uint32`` parallel limits, ``maxDowntimeMs`` with ``+kubebuilder:validation:Minimum=1`` and
``Maximum=2000000``, ``bandwidthPerMigration`` a Quantity) — enforced in KubeVirt by the CRD's
structural schema, whose messages are Kubernetes' (``<path> in body should be greater than or
equal to 1``). The field types themselves are checked by decoding (shared.api.kubevirt).

Deliberate differences: a negative ``bandwidthPerMigration`` is refused (KubeVirt's schema lets
it through; it means nothing); KubeVirt's newest update admitter refuses changing
``maxDowntimeMs`` without the alpha MigrationStallDetection/MigrationDowntimeTuning gates — here
it may be changed freely, as in KubeVirt releases before those gates.
"""

from __future__ import annotations

from typing import Any

from shared.admission.context import AdmissionContext
from shared.admission.fields import invalid_value
from shared.api.quantity import is_quantity, parse_quantity
from shared.errors import StatusCause

MIGRATIONS_PATH = "spec.configuration.migrations"
UINT32_MAX = 2**32 - 1
#: field -> (minimum, maximum) as KubeVirt's schema and Go types allow.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "parallelMigrationsPerCluster": (0, UINT32_MAX),
    "parallelOutboundMigrationsPerNode": (0, UINT32_MAX),
    "maxDowntimeMs": (1, 2_000_000),
}


def _range_cause(field: str, value: int, low: int, high: int) -> StatusCause | None:
    path = f"{MIGRATIONS_PATH}.{field}"
    if value < low:
        return invalid_value(path, f"Invalid value: {value}: {path} in body should be greater than or equal to {low}")
    if value > high:
        return invalid_value(path, f"Invalid value: {value}: {path} in body should be less than or equal to {high}")
    return None


def compute_migration_configuration_causes(migrations: dict[str, Any] | None) -> list[StatusCause]:
    """Causes for ``spec.configuration.migrations`` (None or {} is valid: every field defaults).
    Integers out of :data:`INTEGER_RANGES`; ``bandwidthPerMigration`` not a non-negative quantity."""
    causes: list[StatusCause] = []
    if not migrations:
        return causes
    for field, (low, high) in INTEGER_RANGES.items():
        value = migrations.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            cause = _range_cause(field, value, low, high)
            if cause is not None:
                causes.append(cause)
    bandwidth = migrations.get("bandwidthPerMigration")
    if bandwidth is not None:
        path = f"{MIGRATIONS_PATH}.bandwidthPerMigration"
        if not is_quantity(bandwidth):
            causes.append(invalid_value(path, f"Invalid value: {bandwidth!r}: {path} is not a quantity"))
        elif parse_quantity(bandwidth) < 0:
            causes.append(invalid_value(path, f"Invalid value: {bandwidth!r}: {path} must not be negative"))
    return causes


def admit_kubevirt(obj: dict[str, Any], ctx: AdmissionContext) -> list[StatusCause]:
    """Create and update of a KubeVirt object: :func:`compute_migration_configuration_causes`.
    (Only one KubeVirt object may exist: that needs the store, see virt-api's store admission.)"""
    configuration = (obj.get("spec") or {}).get("configuration") or {}
    return compute_migration_configuration_causes(configuration.get("migrations"))
