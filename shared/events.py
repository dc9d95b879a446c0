"""Typed messages between services and the NATS subjects that carry them.

Every message is a msgspec Struct in a tagged union whose tag field is ``kind``
(never dropped by ``omit_defaults``); subjects are versioned
``kubevirt.v1.<family>.<...>`` so a payload change gets a new version. What is
state lives in the store; these are commands a caller waits on (request/reply)
and notifications a receiver may miss without harm (a level-triggered receiver
re-reads the store).

Families:

``kubevirt.v1.handler.<node>.command`` - request/reply to the virt-handler of
  ``<node>``: ``Pause``, ``Unpause``, ``SoftReboot``, ``GuestOSInfo`` (virt-api's
  ``pause``, ``unpause``, ``softreboot``, ``guestosinfo`` subresources), ``Freeze``, ``Unfreeze``
  (virt-api's ``freeze``/``unfreeze`` subresources and virt-snapshot), ``BackupVolumes``,
  ``BackupStatus``, ``AbortBackup`` (virt-snapshot's copies of a running VM's disks). The reply is a ``CommandResult``
  whose ``code``/``reason``/``message`` are those of the Kubernetes Status
  virt-api should answer with (200 on success). Idempotent: pausing a paused
  VMI succeeds.
``kubevirt.v1.domain.<node>.<namespace>.<name>`` - ``DomainEvent``
  notifications published by the handler when a domain changes (after it wrote
  the VMI status); informational for other services and tests.

Tokens: node, namespace and object names are DNS names that may contain dots,
which NATS uses as token separators; dots become ``_`` (never part of a DNS
name, so the mapping is reversible).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

SUBJECT_PREFIX = "kubevirt.v1"


def encode_token(name: str) -> str:
    """A DNS name as one NATS subject token (``node1.example.com`` -> ``node1_example_com``)."""
    return name.replace(".", "_")


def decode_token(token: str) -> str:
    """Inverse of ``encode_token``."""
    return token.replace("_", ".")


def handler_command_subject(node_name: str) -> str:
    """Subject on which the virt-handler of ``node_name`` answers lifecycle commands."""
    return f"{SUBJECT_PREFIX}.handler.{encode_token(node_name)}.command"


def domain_event_subject(node_name: str, namespace: str, name: str) -> str:
    """Subject of ``DomainEvent`` notifications for one VMI on one node."""
    return f"{SUBJECT_PREFIX}.domain.{encode_token(node_name)}.{encode_token(namespace)}.{encode_token(name)}"


def domain_event_wildcard(node_name: str | None = None) -> str:
    """Subscription subject for every domain event (of one node when given)."""
    node = encode_token(node_name) if node_name else "*"
    return f"{SUBJECT_PREFIX}.domain.{node}.>"


class _Command(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    """Addresses one VMI; ``uid`` (when set) must match, so a command never reaches a newer
    VMI of the same name."""

    namespace: str
    name: str
    uid: str = ""


class Pause(_Command, tag="Pause"):
    """Pause the VMI's guest (libvirt suspend); the handler sets condition Paused/PausedByUser."""


class Unpause(_Command, tag="Unpause"):
    """Resume a paused guest; the handler removes the Paused condition."""


class SoftReboot(_Command, tag="SoftReboot"):
    """Ask the guest to reboot (guest agent or ACPI), keeping the VMI."""


class GuestOSInfo(_Command, tag="GuestOSInfo"):
    """Read the guest agent's information; the reply's ``body`` is the ``guestosinfo``
    subresource (``VirtualMachineInstanceGuestAgentInfo``). 409 when no agent is connected."""


class Freeze(_Command, tag="Freeze"):
    """Freeze the guest's filesystems through the guest agent (libvirt ``virDomainFSFreeze``).

    ``unfreeze_timeout_seconds`` (> 0): the handler thaws the guest on its own that many seconds
    after the request even if no ``Unfreeze`` comes - armed before the freeze is asked, persisted
    in the VMI's directory so a restarted handler still honours it (KubeVirt's virt-launcher
    ``unfreezeTimeout``). 409 when the VMI is not running, is paused or has no connected agent;
    the agent's error (or its silence past libvirt's agent timeout) is a 500 with its message."""

    unfreeze_timeout_seconds: int


class Unfreeze(_Command, tag="Unfreeze"):
    """Thaw the guest's filesystems (``virDomainFSThaw``) and drop the armed unfreeze timeout.
    Idempotent: thawing a thawed guest succeeds."""


class VolumeCopy(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One disk of a running domain to copy: the VMI volume ``volume_name`` into ``target_path``
    (a qcow2 file the handler creates; it appears under that name only once complete, written
    as ``<target_path>.part`` until then)."""

    volume_name: str
    target_path: str


class BackupVolumes(_Command, tag="BackupVolumes"):
    """Start one point-in-time copy of several disks of a running domain, atomic across them
    (libvirt push-mode backup, ``virDomainBackupBegin``; on libvirt's test driver a stand-in
    file copy, named as such). Idempotent by ``backup_id`` (the snapshot's uid): a second request
    for a backup that runs or has completed answers 200 again. The reply (200) means the point
    in time is fixed; ``body`` is ``{"creationTime": RFC 3339}``. 409 when the domain does not
    run or another backup job runs; 422 for a volume the domain has no disk for."""

    backup_id: str
    volumes: list[VolumeCopy]


class BackupStatus(_Command, tag="BackupStatus"):
    """Where the backup ``backup_id`` stands. Reply ``body``: ``{"phase": "Running" |
    "Completed" | "Failed" | "NotFound", "processedBytes": int, "totalBytes": int,
    "message": str}``; ``NotFound`` when the handler knows no such job and its target files are
    not complete (e.g. it restarted and the job is gone)."""

    backup_id: str
    volumes: list[VolumeCopy]


class AbortBackup(_Command, tag="AbortBackup"):
    """Abort the backup ``backup_id`` if it runs (``virDomainAbortJob``) and remove its partial
    files. Idempotent."""

    backup_id: str
    volumes: list[VolumeCopy]


HandlerCommand = Union[Pause, Unpause, SoftReboot, GuestOSInfo, Freeze, Unfreeze, BackupVolumes, BackupStatus,
                       AbortBackup]


class CommandResult(msgspec.Struct, tag="CommandResult", tag_field="kind", kw_only=True, omit_defaults=True):
    """Reply to a ``HandlerCommand``: ``code`` is the HTTP status virt-api returns (200 OK,
    404 NotFound, 409 Conflict, 500 InternalError), ``reason`` the Kubernetes StatusReason."""

    code: int = 200
    reason: str = ""
    message: str = ""
    body: dict[str, Any] | None = None  # answer payload of read commands (GuestOSInfo)

    @property
    def ok(self) -> bool:
        return self.code < 300


class DomainEvent(msgspec.Struct, tag="DomainEvent", tag_field="kind", kw_only=True, omit_defaults=True):
    """A domain changed on ``node``: libvirt ``event`` (``Started``, ``Stopped``, ``Suspended``,
    ``Resumed``, ``Undefined``, ...) and the resulting domain ``state``/``reason`` in KubeVirt's
    names; ``timestamp`` RFC 3339 UTC with microseconds."""

    node: str
    namespace: str
    name: str
    uid: str = ""
    event: str = ""
    detail: str = ""
    state: str = ""
    reason: str = ""
    timestamp: str = ""


_command_decoder = msgspec.json.Decoder(HandlerCommand)
_result_decoder = msgspec.json.Decoder(CommandResult)
_domain_event_decoder = msgspec.json.Decoder(DomainEvent)


def encode(message: msgspec.Struct) -> bytes:
    """JSON bytes of any message in this module."""
    return msgspec.json.encode(message)


def decode_command(data: bytes) -> HandlerCommand:
    """Decode a handler command; raises ``msgspec.ValidationError``/``DecodeError`` on bad input."""
    return _command_decoder.decode(data)


def decode_command_result(data: bytes) -> CommandResult:
    """Decode a ``CommandResult`` reply."""
    return _result_decoder.decode(data)


def decode_domain_event(data: bytes) -> DomainEvent:
    """Decode a ``DomainEvent`` notification."""
    return _domain_event_decoder.decode(data)
