"""What virt-handler does next about a VMI's live migration on this node (pure).

``compute_migration_action(vmi, domain, facts)`` looks at the VMI's ``status.migrationState``
(written by virt-migration, the source and the target handler; see
``notes/migration-design.md``), the local libvirt domain of the VMI and a few local facts, and
returns exactly one action; ``migration_executor`` performs it. The handler's role follows from
the VMI (:func:`compute_role`):

- ``source``: ``status.nodeName`` is this node and a migration to another node is handed off;
- ``target``: ``migrationState.targetNode`` is this node and ``nodeName`` is another;
- ``former``: neither, but this node still holds files of the VMI (a finished source, or a
  target whose migration failed or was replaced);
- ``owner``: the VMI is this node's and no migration concerns it -> the normal sync.

Source rules, in order: no hand-off -> ``NoMigrationWork`` (the normal sync); a migration that
ended in failure -> the normal sync (the guest kept running here); one that succeeded -> wait for
the target's ownership compare-and-swap (``WaitMigration``: never mark the VMI Failed because the
domain left); not started: abort requested -> ``WriteSourceOutcome`` (failed, abortStatus
Succeeded), target ready and the domain running -> ``StartSource``; started and not ended: a
transfer runs in this process -> the (guarded) normal sync; else (a restarted handler): no local
domain, or one shut off by the migration -> succeeded (libvirt removes the source domain only on
success), a local domain with an outgoing migration job -> ``ResumeSourceMonitor``, a local domain
without one -> failed ("migration interrupted").

Target rules: the migration failed -> ``CleanUpTarget`` (the incoming domain and files);
the source reported success, or the incoming domain runs and is not paused (libvirt resumes the
target only at completion; not under post-copy) -> ``ClaimOwnership``; not ready yet ->
``PrepareTarget``; else wait. Former rules: ``CleanUpFormer`` — files always, a domain of the VMI
only when it is shut off or is an incoming domain this node prepared that never became the guest:
a running domain of a VMI whose migration says it moved is never destroyed.

Stand-in migration (libvirt's test driver cannot migrate): the target defines and starts the
domain paused; the source waits a fixed delay and removes its domain; the target resumes its
domain when the source reports completion. The same rules apply; only ``facts.stand_in`` changes
what "running incoming domain" means (a stand-in incoming domain is paused until the end).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.virt_handler.hypervisor_types import DomainInfo
from shared.api.migration import MigrationState
from shared.api.vmi import VirtualMachineInstance

SOURCE = "source"
TARGET = "target"
FORMER = "former"
OWNER = "owner"
NONE = "none"

INTERRUPTED = "migration interrupted: the source virt-handler restarted and libvirt has no migration job"
ABORTED_BEFORE_START = "Migration aborted before it started"
WAIT_SECONDS = 1.0
"""How often a handler waiting on the other side of a migration looks again (seconds)."""


@dataclass(frozen=True)
class MigrationFacts:
    """What the node knows beside the VMI and its domain.

    ``node_name``: this node; ``stand_in``: this handler's libvirt is the test driver (stand-in
    migration); ``runner_active``: this process runs the outgoing transfer (or its monitor) of
    the VMI; ``job_active``: libvirt reports an outgoing migration job on the local domain (only
    asked for a started migration without a runner; False otherwise); ``files_exist``: the VMI's
    per-VMI directory exists here; ``incoming``: that directory is marked as prepared for an
    incoming migration that has not become the guest yet."""

    node_name: str
    stand_in: bool = False
    runner_active: bool = False
    job_active: bool = False
    files_exist: bool = False
    incoming: bool = False


@dataclass(frozen=True)
class NoMigrationWork:
    """Nothing about a migration: run the normal sync."""


@dataclass(frozen=True)
class WaitMigration:
    """Do nothing (not even the normal sync); look again after ``requeue_after`` s (None: when
    something changes)."""

    requeue_after: float | None = WAIT_SECONDS


@dataclass(frozen=True)
class PrepareTarget:
    """Prepare the per-VMI files (overlay on the same base image, cloud-init ISO), mark them
    incoming, and for a stand-in define and start the domain paused; then write
    ``targetNodeAddress``."""

    define_paused: bool


@dataclass(frozen=True)
class ClaimOwnership:
    """The one ownership compare-and-swap (``nodeName``, label, ``completed``...); ``resume``: resume
    the paused stand-in domain first."""

    resume: bool


@dataclass(frozen=True)
class CleanUpTarget:
    """The migration failed: destroy and undefine ``domain_name`` (None: none to remove), remove the
    files of ``uid``."""

    domain_name: str | None
    uid: str


@dataclass(frozen=True)
class CleanUpFormer:
    """This node no longer has a part in the VMI: undefine (after destroying, when ``destroy``)
    ``domain_name`` when not None, remove the files of ``uid``, forget the VMI."""

    domain_name: str | None
    destroy: bool
    uid: str


@dataclass(frozen=True)
class StartSource:
    """Write ``startTimestamp`` and ``mode: PreCopy`` (compare-and-swap), then start the transfer."""


@dataclass(frozen=True)
class ResumeSourceMonitor:
    """A restarted source finds libvirt's migration job still running: follow it to its end."""


@dataclass(frozen=True)
class WriteSourceOutcome:
    """Write the end of the migration: ``succeeded`` or failed with ``reason``; ``abort_status``
    when an abort was requested."""

    succeeded: bool
    reason: str | None = None
    abort_status: str | None = None


MigrationAction = (NoMigrationWork | WaitMigration | PrepareTarget | ClaimOwnership | CleanUpTarget
                   | CleanUpFormer | StartSource | ResumeSourceMonitor | WriteSourceOutcome)


def migration_state_of(vmi: VirtualMachineInstance | None) -> MigrationState | None:
    """``status.migrationState`` of ``vmi`` (None when unset)."""
    return vmi.status.migration_state if vmi is not None and vmi.status is not None else None


def _node_of(vmi: VirtualMachineInstance) -> str | None:
    return vmi.status.node_name if vmi.status is not None else None


def compute_role(vmi: VirtualMachineInstance, node_name: str, *, files_exist: bool = False) -> str:
    """This node's part in ``vmi`` (see the module docstring): ``source``, ``target``, ``owner``,
    ``former`` (only with ``files_exist``) or ``none``."""
    ms = migration_state_of(vmi)
    handed_off = ms is not None and bool(ms.migration_uid) and bool(ms.target_node)
    if _node_of(vmi) == node_name:
        if handed_off and ms is not None and ms.target_node != node_name:
            return SOURCE
        return OWNER
    if handed_off and ms is not None and ms.target_node == node_name:
        return TARGET
    return FORMER if files_exist else NONE


def is_in_view(vmi: VirtualMachineInstance, node_name: str, *, files_exist: bool) -> bool:
    """Whether this node's handler keeps ``vmi`` in its view (nodeName or targetNode is this node,
    or this node still holds its files)."""
    return compute_role(vmi, node_name, files_exist=files_exist) != NONE


def is_started_not_ended(ms: MigrationState | None) -> bool:
    """A migration whose transfer began (``startTimestamp``) and that has not ended (``completed``)."""
    return ms is not None and bool(ms.start_timestamp) and not ms.completed


def is_moving_away(vmi: VirtualMachineInstance | None, node_name: str) -> bool:
    """On the source: the VMI's domain may vanish or stop because of its migration (started and not
    ended, or succeeded and not yet claimed by the target), so its absence says nothing about the
    guest. ``sync_decision`` must then neither mark the VMI Failed nor finish it."""
    if vmi is None or _node_of(vmi) != node_name:
        return False
    ms = migration_state_of(vmi)
    if ms is None or not ms.migration_uid or ms.target_node in (None, node_name):
        return False
    return is_started_not_ended(ms) or bool(ms.completed and not ms.failed)


def _uid(vmi: VirtualMachineInstance) -> str:
    return (vmi.metadata.uid if vmi.metadata is not None else None) or ""


def _own_domain(domain: DomainInfo | None, uid: str) -> DomainInfo | None:
    return domain if domain is not None and domain.uid == uid else None


def compute_migration_action(vmi: VirtualMachineInstance, domain: DomainInfo | None,
                             facts: MigrationFacts) -> MigrationAction:
    """The next migration step on this node for ``vmi`` and its local ``domain`` (None: none);
    rules in the module docstring."""
    role = compute_role(vmi, facts.node_name, files_exist=facts.files_exist)
    ms = migration_state_of(vmi)
    if role == SOURCE and ms is not None:
        return _compute_source(ms, domain, facts)
    if role == TARGET and ms is not None:
        return _compute_target(ms, _own_domain(domain, _uid(vmi)), _uid(vmi), facts)
    if role == FORMER:
        return _compute_former(_own_domain(domain, _uid(vmi)), _uid(vmi), facts)
    return NoMigrationWork()


def _compute_source(ms: MigrationState, domain: DomainInfo | None, facts: MigrationFacts) -> MigrationAction:
    if ms.completed:
        return NoMigrationWork() if ms.failed else WaitMigration()
    if not ms.start_timestamp:
        if ms.abort_requested:
            return WriteSourceOutcome(succeeded=False, reason=ABORTED_BEFORE_START, abort_status="Succeeded")
        if ms.target_node_address and domain is not None and domain.is_active:
            return StartSource()
        return NoMigrationWork()
    if facts.runner_active:
        return NoMigrationWork()
    if domain is None or (not domain.is_active and domain.reason == "Migrated"):
        return WriteSourceOutcome(succeeded=True, abort_status="Failed" if ms.abort_requested else None)
    if facts.job_active:
        return ResumeSourceMonitor()
    return WriteSourceOutcome(succeeded=False, reason=INTERRUPTED,
                              abort_status="Succeeded" if ms.abort_requested else None)


def _compute_target(ms: MigrationState, domain: DomainInfo | None, uid: str,
                    facts: MigrationFacts) -> MigrationAction:
    if ms.failed:
        if domain is not None or facts.files_exist:
            incoming = domain is not None and (facts.incoming or not domain.is_active)
            return CleanUpTarget(domain_name=domain.name if incoming and domain is not None else None, uid=uid)
        return WaitMigration(None)
    if ms.completed:
        return ClaimOwnership(resume=facts.stand_in and domain is not None and domain.state == "Paused")
    if domain is not None and not facts.stand_in and domain.is_active and domain.state != "Paused" \
            and domain.reason != "PostCopy":
        return ClaimOwnership(resume=False)
    if ms.abort_requested and not ms.start_timestamp:
        return WaitMigration(None)  # the source answers the abort; nothing to prepare
    needs_domain = facts.stand_in and domain is None and not ms.start_timestamp
    if not ms.target_node_address or (not facts.files_exist and not ms.start_timestamp) or needs_domain:
        return PrepareTarget(define_paused=facts.stand_in)
    return WaitMigration(None)


def _compute_former(domain: DomainInfo | None, uid: str, facts: MigrationFacts) -> MigrationAction:
    if domain is None:
        return CleanUpFormer(domain_name=None, destroy=False, uid=uid)
    if not domain.is_active:
        return CleanUpFormer(domain_name=domain.name, destroy=False, uid=uid)
    if facts.incoming and domain.state == "Paused":
        return CleanUpFormer(domain_name=domain.name, destroy=True, uid=uid)
    return WaitMigration(None)  # a running guest here while the VMI says it is elsewhere: never destroyed
