"""How a VM is snapshotted: its state (online, paused, guest agent), which volumes are included,
and the resulting ``status.indications`` / ``sourceIndications`` (pure).

Sources: KubeVirt ``pkg/storage/snapshot/source.go`` (UpdateSourceState: paused = VMI condition
Paused=True, guest agent = condition AgentConnected), ``snapshot.go``
(updateSnapshotSourceIndications, the indication messages, PartialSnapshot). Here a VM is online
when its VMI is Running (the copy then goes through the VMI's node); a volume is included when it
is a ``persistentVolumeClaim`` or ``dataVolume`` (claim of the DataVolume's name) whose claim
exists and is Bound; every other volume is excluded and makes the snapshot ``PartialSnapshot``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.api.snapshot import SourceIndication
from shared.api.snapshot_vocabulary import Indication
from shared.api.storage import ClaimPhase, PersistentVolumeClaim
from shared.api.vm import VirtualMachine
from shared.api.vmi import VirtualMachineInstance

#: KubeVirt's sentence for each indication (snapshot.go snapshotIndicationMessages)
INDICATION_MESSAGES: dict[str, str] = {
    Indication.ONLINE: "Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing.",
    Indication.GUEST_AGENT: "Guest agent was active and attempted to quiesce the filesystem for application "
                            "consistency.",
    Indication.NO_GUEST_AGENT: "Guest agent was not available. Snapshot is crash-consistent and may not be "
                               "application-consistent.",
    Indication.QUIESCE_TIMEOUT: "Guest agent quiesced the filesystem, but the freeze window timed out before "
                                "completion. Snapshot is crash-consistent and may not be application-consistent.",
    Indication.PAUSED: "Snapshot taken while the VM was paused. Snapshot is crash-consistent and may not be "
                       "application-consistent.",
    Indication.PARTIAL_SNAPSHOT: "Not all snapshotable volumes were included in the snapshot. Check "
                                 "status.snapshotVolumes for excluded volumes and VM VolumeSnapshotStatus for "
                                 "details.",
}


def indication_message(indication: str) -> str:
    """KubeVirt's sentence for ``indication`` ("Unknown indication" for others)."""
    return INDICATION_MESSAGES.get(indication, "Unknown indication")


@dataclass(frozen=True)
class IncludedVolume:
    """A volume whose claim is copied."""

    volume_name: str
    claim_name: str


@dataclass(frozen=True)
class SourceState:
    """The VM as the snapshot sees it.

    ``online``: its VMI is Running (``node``/``vmi_name``/``vmi_uid`` then name it); ``paused``:
    VMI condition Paused=True; ``guest_agent``: AgentConnected=True; ``frozen``: the VMI's
    ``status.fsFreezeStatus`` is ``frozen``."""

    online: bool = False
    paused: bool = False
    guest_agent: bool = False
    frozen: bool = False
    node: str | None = None
    vmi_name: str | None = None
    vmi_uid: str | None = None
    included: list[IncludedVolume] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def needs_freeze(self) -> bool:
        """Whether the guest's filesystems are frozen around the point in time."""
        return self.online and not self.paused and self.guest_agent


def _condition_true(vmi: VirtualMachineInstance, ctype: str) -> bool:
    conditions = (vmi.status.conditions if vmi.status else None) or []
    return any(c.type == ctype and c.status == "True" for c in conditions)


def claim_of_volume(volume: object) -> str | None:
    """The claim name a VM volume uses (``persistentVolumeClaim.claimName``, or a
    ``dataVolume``'s name, which is its claim's name), None for other volume types."""
    pvc = getattr(volume, "persistent_volume_claim", None)
    if pvc is not None and pvc.claim_name:
        return str(pvc.claim_name)
    dv = getattr(volume, "data_volume", None)
    if dv is not None and dv.name:
        return str(dv.name)
    return None


def compute_source_state(vm: VirtualMachine, vmi: VirtualMachineInstance | None,
                         claims: Mapping[str, PersistentVolumeClaim]) -> SourceState:
    """The :class:`SourceState` of ``vm`` with its VMI (None: not running) and the claims of its
    namespace by name."""
    online = vmi is not None and vmi.status is not None and vmi.status.phase == "Running"
    included: list[IncludedVolume] = []
    excluded: list[str] = []
    template = vm.spec.template
    volumes = (template.spec.volumes if template is not None and template.spec is not None else None) or []
    for volume in volumes:
        claim_name = claim_of_volume(volume)
        claim = claims.get(claim_name) if claim_name else None
        bound = (claim is not None and claim.status is not None and claim.status.phase == ClaimPhase.BOUND
                 and (claim.metadata is None or claim.metadata.deletion_timestamp is None))
        if claim_name and bound:
            included.append(IncludedVolume(volume.name, claim_name))
        else:
            excluded.append(volume.name)
    if not online or vmi is None:
        return SourceState(included=included, excluded=excluded)
    meta = vmi.metadata
    return SourceState(online=True, paused=_condition_true(vmi, "Paused"),
                       guest_agent=_condition_true(vmi, "AgentConnected"),
                       frozen=(vmi.status.fs_freeze_status if vmi.status else None) == "frozen",
                       node=vmi.status.node_name if vmi.status else None,
                       vmi_name=meta.name if meta else None, vmi_uid=meta.uid if meta else None,
                       included=included, excluded=excluded)


def compute_indications(state: SourceState) -> list[str]:
    """``status.indications``: Online with Paused / GuestAgent / NoGuestAgent for an online VM
    (sorted, as KubeVirt's set), then PartialSnapshot when a volume is excluded."""
    out: list[str] = []
    if state.online:
        out.append(Indication.ONLINE)
        if state.paused:
            out.append(Indication.PAUSED)
        elif state.guest_agent:
            out.append(Indication.GUEST_AGENT)
        else:
            out.append(Indication.NO_GUEST_AGENT)
        out.sort()
    if state.excluded:
        out.append(Indication.PARTIAL_SNAPSHOT)
    return out


def compute_source_indications(indications: list[str]) -> list[SourceIndication]:
    """``status.sourceIndications``: each indication with KubeVirt's message."""
    return [SourceIndication(indication=i, message=indication_message(i)) for i in indications]
