"""What virt-migration writes on a VMI (pure): hand-off, abort, finish, evacuation mark.

Each function takes the VMI as last read and returns the VMI to write, or None when there is
nothing to write (already done, or no longer this migration's business); the executor applies
it with a compare-and-swap and, on Conflict, calls it again on the fresh VMI, so a concurrent
writer's fields (the handlers') are never lost and a decision is never applied to a state it
was not made for.

- hand-off (KubeVirt ``handleTargetPodHandoff``): ``status.migrationState`` replaced by
  ``{migrationUid, sourceNode, targetNode, migrationPolicyName, migrationConfiguration}``, label
  ``kubevirt.io/migrationTargetNodeName=<target>``, annotation
  ``kubevirt-py.io/migration-traceparent`` (the VMIM's trace context, for the handlers' spans)
  and the VMI's own trace annotations set to the same context (the migration is the latest
  operation on the VMI);
- abort: ``migrationState.abortRequested=true``; when the source has not started yet
  (no ``startTimestamp``), the migration also ends there: ``abortStatus: Succeeded``,
  ``completed``, ``failed``, ``endTimestamp`` and a failure reason (nobody else would);
- target timeout: a migration the source has not started (no ``startTimestamp``) ends as
  failed: ``completed``, ``failed``, ``endTimestamp``, ``failureReason``;
- finish: the target-node label removed, and after a success ``evacuationNodeName`` cleared
  when it named the node the VMI left;
- evacuation mark: ``status.evacuationNodeName=<node>``.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.virt_migration.configuration import EffectiveMigration
from shared.api.meta import ObjectMeta
from shared.api.migration import MigrationState
from shared.api.migration_vocabulary import (
    MIGRATION_TARGET_NODE_LABEL,
    MIGRATION_TRACEPARENT_ANNOTATION,
    MigrationAbortStatus,
)
from shared.api.vmi import VirtualMachineInstance, VirtualMachineInstanceStatus
from shared.api.vocabulary import format_time
from shared.tracing import TRACE_ID_ANNOTATION, TRACEPARENT_ANNOTATION

"""On a VMI: the W3C traceparent of the migration in flight (copied from its VMIM at hand-off)."""

ABORTED_BEFORE_START = "Migration aborted before the source started it"

_replace = msgspec.structs.replace


def _state(vmi: VirtualMachineInstance) -> MigrationState | None:
    return vmi.status.migration_state if vmi.status is not None else None


def compute_handoff(vmi: VirtualMachineInstance, migration_uid: str, target_node: str,
                    effective: EffectiveMigration, traceparent: str | None) -> VirtualMachineInstance | None:
    """The VMI handed to the handlers for migration ``migration_uid`` to ``target_node``; None
    when it already carries this migration, or carries another migration still in flight."""
    current = _state(vmi)
    if current is not None and current.migration_uid == migration_uid:
        return None
    if current is not None and current.migration_uid and not (current.completed or current.failed):
        return None
    status = vmi.status or VirtualMachineInstanceStatus()
    state = MigrationState(migration_uid=migration_uid, source_node=status.node_name, target_node=target_node,
                           migration_policy_name=effective.policy_name,
                           migration_configuration=effective.options.to_configuration())
    meta = vmi.metadata or ObjectMeta()
    annotations = dict(meta.annotations or {})
    if traceparent:
        # the migration is now the latest operation on the VMI: every service's work on it (the
        # handlers' syncs, virt-controller's reconciles) joins the migration's trace, not the VMI's
        # creation trace; ``virtctl trace vm/NAME`` then shows the VM's last operation and this one
        annotations.update({MIGRATION_TRACEPARENT_ANNOTATION: traceparent, TRACEPARENT_ANNOTATION: traceparent,
                            TRACE_ID_ANNOTATION: traceparent[3:35]})
    else:
        annotations.pop(MIGRATION_TRACEPARENT_ANNOTATION, None)
    meta = _replace(meta, labels={**(meta.labels or {}), MIGRATION_TARGET_NODE_LABEL: target_node},
                    annotations=annotations or None)
    return _replace(vmi, metadata=meta, status=_replace(status, migration_state=state))


def compute_abort(vmi: VirtualMachineInstance, migration_uid: str, now: datetime) -> VirtualMachineInstance | None:
    """The VMI with the abort of migration ``migration_uid`` requested; None when its migration
    state is another's, has ended, or already asks for the abort."""
    current = _state(vmi)
    if current is None or current.migration_uid != migration_uid or current.abort_requested \
            or current.completed or current.failed:
        return None
    if current.start_timestamp:
        state = _replace(current, abort_requested=True)
    else:
        state = _replace(current, abort_requested=True, abort_status=MigrationAbortStatus.SUCCEEDED.value,
                         completed=True, failed=True, end_timestamp=format_time(now),
                         failure_reason=ABORTED_BEFORE_START)
    assert vmi.status is not None
    return _replace(vmi, status=_replace(vmi.status, migration_state=state))


def compute_target_timeout(vmi: VirtualMachineInstance, migration_uid: str, now: datetime,
                           reason: str) -> VirtualMachineInstance | None:
    """The VMI with migration ``migration_uid`` ended as failed because its target was not ready in
    time; None when the state is another's, has ended, or the source has started (then the source
    decides how it ends)."""
    current = _state(vmi)
    if current is None or current.migration_uid != migration_uid or current.start_timestamp \
            or current.completed or current.failed:
        return None
    state = _replace(current, completed=True, failed=True, end_timestamp=format_time(now), failure_reason=reason)
    assert vmi.status is not None
    return _replace(vmi, status=_replace(vmi.status, migration_state=state))


def compute_finish(vmi: VirtualMachineInstance, migration_uid: str, succeeded: bool) -> VirtualMachineInstance | None:
    """The VMI after migration ``migration_uid`` ended (see module docstring); None when nothing
    is left to clean or the VMI's migration state is another's."""
    current = _state(vmi)
    if current is None or current.migration_uid != migration_uid or vmi.metadata is None:
        return None
    labels = dict(vmi.metadata.labels or {})
    changed = labels.pop(MIGRATION_TARGET_NODE_LABEL, None) is not None
    meta = _replace(vmi.metadata, labels=labels or None)
    status = vmi.status or VirtualMachineInstanceStatus()
    if succeeded and status.evacuation_node_name and status.evacuation_node_name == current.source_node:
        status = _replace(status, evacuation_node_name=None)
        changed = True
    return _replace(vmi, metadata=meta, status=status) if changed else None


def compute_evacuation_mark(vmi: VirtualMachineInstance, node: str) -> VirtualMachineInstance | None:
    """The VMI with ``status.evacuationNodeName=node``; None when it already names ``node``."""
    status = vmi.status or VirtualMachineInstanceStatus()
    if status.evacuation_node_name == node:
        return None
    return _replace(vmi, status=_replace(status, evacuation_node_name=node))
