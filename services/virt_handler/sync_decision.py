"""What virt-handler does next for one VMI and its libvirt domain (pure).

``compute_sync_action(vmi, domain, node)`` compares the VMI placed on this node (or None when
it is gone) with its domain (or None) and the node's facts about them, and returns exactly one
action; ``sync_executor`` performs it through the ``Hypervisor`` gateway and the store. The
rules are those of KubeVirt's virt-handler (``pkg/virt-handler/vm.go``: ``execute``,
``processVmShutdown``, ``processVmCleanup``), in the order they are checked:

1. A domain this handler did not make (``NodeFacts.domain_owned`` False: foreign, or another
   handler's on a shared libvirt) -> ``Nothing``: never touched.
2. A domain whose uid is not the VMI's (the VMI is gone or replaced by a newer one of the same
   name) -> ``RemoveStaleDomain``: stop it (ACPI, destroy after the recorded owner's grace
   period; at once when no owner is recorded), undefine it, remove its files, then ``then``
   (the action for the VMI as if there were no domain).
3. No VMI -> ``Nothing``.
4. VMI ``Succeeded``/``Failed`` -> ``CleanUpFinal`` (destroy and undefine a leftover domain,
   remove the VMI's files), or ``Nothing`` when nothing is left.
5. No domain: VMI being deleted -> ``MarkFailed`` (it never ran, or its guest vanished);
   ``Scheduled`` -> ``StartDomain``; ``Running``/``Unknown`` -> ``MarkFailed(vanished=True)``.
6. VMI being deleted, domain running -> ``StopDomain`` (ACPI shutdown first, destroy once the
   grace period ``spec.terminationGracePeriodSeconds`` is over).
7. Domain stopped (by the guest, a crash or a destroy) -> ``FinishDomain`` with the phase of
   ``status.compute_phase``.
8. Domain running, guest agent state unknown (adopted after a restart) -> ``AdoptDomain``:
   ask the domain, then decide again. Adoption never restarts a guest.
9. Migration guard: while the VMI is moving away from this node (``migration_decision.
   is_moving_away``: started and not ended, or succeeded and not yet claimed by the target) a
   missing or stopped domain is the migration's doing -> ``Nothing`` (look again soon): the VMI
   is neither marked Failed nor finished. (Checked before rules 5 and 7.)
10. Otherwise -> ``WriteLiveStatus``: phase and conditions true to the domain; guest details
   fetched from a connected agent every ``guest_refresh_interval`` seconds (not while paused).

Times are wall-clock seconds (``time.time()``), as the shutdown record stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.virt_handler.hypervisor_types import DomainInfo
from services.virt_handler.migration_decision import WAIT_SECONDS, is_moving_away
from services.virt_handler.status import compute_phase
from shared.api.vmi import VirtualMachineInstance
from shared.api.vocabulary import Phase, is_final_phase

#: KubeVirt's default ``terminationGracePeriodSeconds`` for VMIs
DEFAULT_GRACE_SECONDS = 180
#: ``spec.startStrategy`` that starts the guest with its CPUs stopped
START_PAUSED = "Paused"


@dataclass(frozen=True)
class NodeFacts:
    """What the node knows beside the VMI and the domain.

    ``node_name``: this handler's node; ``domain_owned``: the domain carries a VMI uid whose
    directory exists in this handler's state dir; ``now``: wall-clock seconds;
    ``shutdown_started``: when the stop of the domain began (its shutdown record), None before;
    ``stale_owner``: the recorded VMI a stale domain was made for (None: no record);
    ``agent_connected``: the guest agent of the domain is connected (None: not known yet);
    ``guest_info_age``: seconds since guest details were last fetched (None: never, or the
    agent reconnected); ``vmi_files_exist``: the VMI's directory exists (only consulted, and
    only looked up, for a VMI in a final phase); intervals in seconds.
    """

    node_name: str
    domain_owned: bool = True
    now: float = 0.0
    shutdown_started: float | None = None
    stale_owner: VirtualMachineInstance | None = None
    agent_connected: bool | None = None
    guest_info_age: float | None = None
    vmi_files_exist: bool = False
    guest_refresh_interval: float = 30.0
    shutdown_poll_interval: float = 1.0


@dataclass(frozen=True)
class StopStep:
    """One look at a domain being stopped: write ``record_start`` (wall-clock seconds) as the
    shutdown record (first look only, else None), send the ACPI power button (``send_acpi``;
    with ``announce`` a ``ShutdownCalled`` Event about the VMI), destroy it (``destroy``, grace
    period over), and look again after ``requeue_after`` seconds (None: the domain is stopped after this step)."""

    grace_seconds: int
    record_start: float | None
    send_acpi: bool
    announce: bool
    destroy: bool
    requeue_after: float | None


@dataclass(frozen=True)
class Nothing:
    """Nothing to do (look again after ``requeue_after`` seconds when not None)."""

    requeue_after: float | None = None


@dataclass(frozen=True)
class StartDomain:
    """Prepare disks, convert, define and start the domain (``paused``: CPUs stopped); write
    ``Running``. A conversion/image/libvirt failure becomes ``Synchronized=False``."""

    paused: bool


@dataclass(frozen=True)
class AdoptDomain:
    """A running domain whose guest agent state is unknown: ask it, then decide again."""

    domain_name: str


@dataclass(frozen=True)
class WriteLiveStatus:
    """Keep the phase and ``Ready``/``Paused``/``AgentConnected`` true to the running domain;
    ``fetch_guest_info``: ask the guest agent for OS, interfaces and machine first."""

    state: str
    reason: str
    agent_connected: bool
    fetch_guest_info: bool
    requeue_after: float | None


@dataclass(frozen=True)
class StopDomain:
    """The VMI is being deleted and its domain runs: one ``StopStep`` towards stopped."""

    domain_name: str
    uid: str
    step: StopStep


@dataclass(frozen=True)
class FinishDomain:
    """The guest stopped: write ``phase`` (Succeeded/Failed), undefine the domain, forget its
    agent state, remove the VMI's files."""

    domain_name: str
    uid: str
    phase: str


@dataclass(frozen=True)
class MarkFailed:
    """No domain for a VMI that needs one: write ``Failed`` and remove the files of ``uid``
    (``vanished``: the VMI was running; else it was deleted before it ever ran)."""

    uid: str | None
    vanished: bool


@dataclass(frozen=True)
class CleanUpFinal:
    """The VMI is final: destroy and undefine ``domain_name`` (when not None), remove the files
    of ``uid`` (when not None)."""

    domain_name: str | None
    uid: str | None


@dataclass(frozen=True)
class RemoveStaleDomain:
    """A domain left by a VMI that is gone or replaced: ``step`` (None: already stopped); once
    stopped, undefine it, remove the files of ``uid`` and continue with ``then``."""

    domain_name: str
    uid: str
    step: StopStep | None
    then: SyncAction


SyncAction = (Nothing | StartDomain | AdoptDomain | WriteLiveStatus | StopDomain | FinishDomain | MarkFailed
              | CleanUpFinal | RemoveStaleDomain)


def compute_grace_seconds(vmi: VirtualMachineInstance) -> int:
    """Seconds between the ACPI shutdown request and the forced destroy:
    ``spec.terminationGracePeriodSeconds`` (KubeVirt default 180), never negative."""
    value = vmi.spec.termination_grace_period_seconds
    return DEFAULT_GRACE_SECONDS if value is None else max(0, int(value))


def is_acpi_on(vmi: VirtualMachineInstance) -> bool:
    """ACPI is on unless ``spec.domain.features.acpi.enabled`` is false (KubeVirt default)."""
    features = vmi.spec.domain.features
    acpi = features.acpi if features is not None else None
    return acpi is None or acpi.enabled is not False


def compute_stop_step(grace: int, started: float | None, now: float, poll: float, *,
                      announce: bool) -> StopStep:
    """One look at a running domain being stopped (``started``: when the stop began, None on the
    first look): ACPI on the first look when ``grace`` > 0, destroy once ``started + grace`` is
    reached, else look again after at most ``poll`` seconds."""
    first = started is None
    begun = now if started is None else started
    remaining = begun + grace - now
    over = remaining <= 0
    return StopStep(grace_seconds=grace, record_start=now if first else None, send_acpi=first and grace > 0,
                    announce=first and grace > 0 and announce, destroy=over,
                    requeue_after=None if over else min(remaining, poll))


def _uid_of(vmi: VirtualMachineInstance | None) -> str | None:
    return vmi.metadata.uid if vmi is not None and vmi.metadata is not None else None


def _phase_of(vmi: VirtualMachineInstance) -> str | None:
    return vmi.status.phase if vmi.status is not None else None


def _is_deleting(vmi: VirtualMachineInstance) -> bool:
    return bool(vmi.metadata is not None and vmi.metadata.deletion_timestamp)


def compute_sync_action(vmi: VirtualMachineInstance | None, domain: DomainInfo | None,
                        node: NodeFacts) -> SyncAction:
    """The one thing to do next for ``vmi`` (None: gone from the store or from this node) and
    ``domain`` (None: no such domain); rules in the module docstring."""
    if domain is not None and not node.domain_owned:
        return Nothing()
    uid = _uid_of(vmi)
    if domain is not None and domain.uid != uid:
        owner = node.stale_owner
        step = None
        if domain.is_active:
            grace = compute_grace_seconds(owner) if owner is not None else 0
            step = compute_stop_step(grace, node.shutdown_started, node.now, node.shutdown_poll_interval,
                                     announce=owner is not None)
        then = _compute_action_without_domain(vmi, uid, node) if vmi is not None else Nothing()
        return RemoveStaleDomain(domain_name=domain.name, uid=domain.uid or "", step=step, then=then)
    if vmi is None:
        return Nothing()
    if (domain is None or not domain.is_active) and is_moving_away(vmi, node.node_name):
        return Nothing(requeue_after=WAIT_SECONDS)
    if domain is None:
        return _compute_action_without_domain(vmi, uid, node)
    if is_final_phase(_phase_of(vmi)):
        return CleanUpFinal(domain_name=domain.name, uid=uid if node.vmi_files_exist else None)
    if _is_deleting(vmi) and domain.is_active:
        step = compute_stop_step(compute_grace_seconds(vmi), node.shutdown_started, node.now,
                                 node.shutdown_poll_interval, announce=True)
        return StopDomain(domain_name=domain.name, uid=domain.uid or "", step=step)
    if not domain.is_active:
        phase = compute_phase(domain.state, domain.reason, acpi_enabled=is_acpi_on(vmi))
        return FinishDomain(domain_name=domain.name, uid=domain.uid or "", phase=phase)
    if node.agent_connected is None:
        return AdoptDomain(domain_name=domain.name)
    connected = node.agent_connected
    fetch, delay = False, None
    if connected and domain.state != "Paused":
        age = node.guest_info_age
        fetch = age is None or age >= node.guest_refresh_interval
        delay = node.guest_refresh_interval
    return WriteLiveStatus(state=domain.state, reason=domain.reason, agent_connected=connected,
                           fetch_guest_info=fetch, requeue_after=delay)


def _compute_action_without_domain(vmi: VirtualMachineInstance, uid: str | None, node: NodeFacts) -> SyncAction:
    phase = _phase_of(vmi)
    if is_final_phase(phase):
        return CleanUpFinal(domain_name=None, uid=uid) if uid and node.vmi_files_exist else Nothing()
    if _is_deleting(vmi):
        return MarkFailed(uid=uid, vanished=False)
    if phase == Phase.SCHEDULED:
        return StartDomain(paused=vmi.spec.start_strategy == START_PAUSED)
    if phase in (Phase.RUNNING, Phase.UNKNOWN):
        return MarkFailed(uid=uid, vanished=True)
    return Nothing()
