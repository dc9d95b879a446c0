"""How the source virt-handler runs one live migration (pure): options, libvirt parameters, the
destination XML, the disks copied along, timeouts and progress samples.

- :func:`compute_migration_options`: ``migrationState.migrationConfiguration`` (the effective
  options virt-migration wrote, KubeVirt's ``MigrationConfiguration`` names) with KubeVirt's
  defaults (``completionTimeoutPerGiB`` 150 s, ``progressTimeout`` 150 s, bandwidth 0 =
  unlimited, no auto-converge, no post-copy, no workload disruption).
- :func:`compute_migration_request`: the ``virDomainMigrateToURI3`` parameters and flags:
  ``VIR_MIGRATE_LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE`` (the domain stays persistent
  on the target and leaves the source only on success), ``UNSAFE`` (libvirt 9.0 calls any
  local-filesystem disk unsafe; ours are per-node files, see feasibility notes §1),
  ``NON_SHARED_INC`` with ``migrate_disks``/``disks_uri`` when writable local disks are copied
  (KubeVirt's ``BlockMigration``: the target's overlay has the same base image, so only the top
  layer moves), ``AUTO_CONVERGE``/``POSTCOPY`` as allowed, ``bandwidth`` in MiB/s,
  ``migrate_uri`` ``tcp://<targetNodeAddress>`` (the target's libvirtd picks the port).
- :func:`compute_destination_xml`: the source's migratable XML with its per-VMI directory
  replaced by the target's.
- :func:`compute_timeout_step`: KubeVirt's live-migration monitor rules
  (``pkg/virt-launcher/virtwrap/live-migration-source.go``): no progress for ``progressTimeout``
  s -> abort; longer than ``completionTimeoutPerGiB`` x GiB -> post-copy if allowed, else pause
  the guest if workload disruption is allowed, else abort.
- :func:`compute_progress`: a ``virDomainGetJobStats`` record -> ``migrationState.progress``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.api.quantity import QuantityError, to_bytes

DEFAULT_COMPLETION_TIMEOUT_PER_GIB = 150
DEFAULT_PROGRESS_TIMEOUT = 150
GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class MigrationOptions:
    """The effective options of one migration: ``bandwidth_mib`` (MiB/s, 0 = unlimited),
    ``completion_timeout_per_gib`` and ``progress_timeout`` (seconds), ``max_downtime_ms`` (None:
    libvirt's default), the three ``allow_*`` switches."""

    bandwidth_mib: int = 0
    completion_timeout_per_gib: int = DEFAULT_COMPLETION_TIMEOUT_PER_GIB
    progress_timeout: int = DEFAULT_PROGRESS_TIMEOUT
    max_downtime_ms: int | None = None
    allow_auto_converge: bool = False
    allow_post_copy: bool = False
    allow_workload_disruption: bool = False


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def compute_migration_options(configuration: Mapping[str, Any] | None) -> MigrationOptions:
    """The options of ``configuration`` (KubeVirt field names; missing -> defaults). A bandwidth
    quantity ("64Mi", bytes per second) becomes whole MiB/s, at least 1 when not zero."""
    conf = configuration or {}
    bandwidth = conf.get("bandwidthPerMigration")
    try:
        bandwidth_bytes = to_bytes(bandwidth) if bandwidth not in (None, "", 0, "0") else 0
    except (QuantityError, ValueError, TypeError, ArithmeticError):
        bandwidth_bytes = 0
    max_downtime = conf.get("maxDowntimeMs")
    return MigrationOptions(
        bandwidth_mib=max(1, bandwidth_bytes // MIB) if bandwidth_bytes > 0 else 0,
        completion_timeout_per_gib=_int(conf.get("completionTimeoutPerGiB"), DEFAULT_COMPLETION_TIMEOUT_PER_GIB),
        progress_timeout=_int(conf.get("progressTimeout"), DEFAULT_PROGRESS_TIMEOUT),
        max_downtime_ms=_int(max_downtime, 0) or None if max_downtime is not None else None,
        allow_auto_converge=bool(conf.get("allowAutoConverge")),
        allow_post_copy=bool(conf.get("allowPostCopy")),
        allow_workload_disruption=bool(conf.get("allowWorkloadDisruption")))


@dataclass(frozen=True)
class MigrationRequest:
    """What the gateway passes to ``migrateToURI3``: ``params`` (libvirt typed-parameter names ->
    values) and the flags by name (``LIVE``, ``PEER2PEER``, ... as in ``VIR_MIGRATE_<name>``)."""

    dest_uri: str
    params: dict[str, Any]
    flags: tuple[str, ...]


def compute_migrated_disks(domain_xml: str) -> list[str]:
    """Target names (``vda``...) of the writable local file disks of a domain: what block
    migration copies (read-only CD-ROMs and shareable disks are not copied)."""
    root = ET.fromstring(domain_xml)
    disks = []
    for disk in root.findall("./devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if disk.get("type") != "file" or disk.get("device", "disk") != "disk" or target is None:
            continue
        if disk.find("readonly") is not None or disk.find("shareable") is not None:
            continue
        if source is None or not source.get("file"):
            continue
        disks.append(target.get("dev") or "")
    return [d for d in disks if d]


def compute_migration_request(options: MigrationOptions, dest_uri: str, address: str, dest_xml: str,
                              disks: list[str]) -> MigrationRequest:
    """The ``migrateToURI3`` call for ``options`` to the libvirtd at ``dest_uri`` with migration
    data to ``address`` (rules in the module docstring)."""
    params: dict[str, Any] = {"migrate_uri": f"tcp://{address}", "destination_xml": dest_xml}
    if options.bandwidth_mib:
        params["bandwidth"] = options.bandwidth_mib
    flags = ["LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "UNSAFE"]
    if disks:
        flags.append("NON_SHARED_INC")
        params["migrate_disks"] = list(disks)
        params["disks_uri"] = f"tcp://{address}"
    if options.allow_auto_converge:
        flags.append("AUTO_CONVERGE")
    if options.allow_post_copy:
        flags.append("POSTCOPY")
    return MigrationRequest(dest_uri=dest_uri, params=params, flags=tuple(flags))


def _replace_prefix(value: str, old: str, new: str) -> str:
    if value == old or value.startswith(old + "/"):
        return new + value[len(old):]
    return value


def compute_destination_xml(domain_xml: str, source_dir: str, target_dir: str) -> str:
    """``domain_xml`` with every attribute or text that is ``source_dir`` or a path below it
    rewritten to the same path below ``target_dir`` (overlays, ISOs, console log, NVRAM)."""
    source_dir, target_dir = source_dir.rstrip("/"), target_dir.rstrip("/")
    root = ET.fromstring(domain_xml)
    for element in root.iter():
        for name, value in element.attrib.items():
            element.set(name, _replace_prefix(value, source_dir, target_dir))
        if element.text and element.text.strip():
            element.text = _replace_prefix(element.text.strip(), source_dir, target_dir)
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class TimeoutStep:
    """What a timeout asks for: ``kind`` ``abort`` | ``post-copy`` | ``pause``, and ``reason`` (the
    failure reason when it aborts)."""

    kind: str
    reason: str


def compute_completion_timeout(options: MigrationOptions, data_total_bytes: int) -> int:
    """Seconds a migration may take: ``completionTimeoutPerGiB`` x the data in GiB, rounded up
    (at least 1 GiB)."""
    return options.completion_timeout_per_gib * max(1, math.ceil(data_total_bytes / GIB))


def compute_timeout_step(options: MigrationOptions, *, elapsed: float, since_progress: float,
                         data_total_bytes: int, mode: str) -> TimeoutStep | None:
    """The step a running migration's timeouts call for (None: none). ``elapsed``: seconds since
    the start; ``since_progress``: seconds since ``dataRemaining`` last went down; ``mode``: the
    current ``migrationState.mode`` (a migration already in post-copy is never aborted: the
    guest runs on the target)."""
    if mode == "PostCopy":
        return None
    if options.progress_timeout > 0 and since_progress > options.progress_timeout:
        return TimeoutStep("abort", f"Live migration stuck for {options.progress_timeout} seconds and has "
                                    "been aborted")
    limit = compute_completion_timeout(options, data_total_bytes)
    if options.completion_timeout_per_gib > 0 and elapsed > limit:
        if options.allow_post_copy:
            return TimeoutStep("post-copy", "")
        if options.allow_workload_disruption:
            return None if mode == "Paused" else TimeoutStep("pause", "")
        return TimeoutStep("abort", f"Live migration is not completed after {limit} seconds and has been aborted")
    return None


def _stat(stats: Mapping[str, Any], key: str) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compute_progress(stats: Mapping[str, Any], updated: str) -> dict[str, Any]:
    """``migrationState.progress`` (camelCase keys, bytes, bytes/s, ms) from a job-stats record
    (libvirt ``VIR_DOMAIN_JOB_*`` keys); fields libvirt did not report are left out."""
    page = _stat(stats, "memory_page_size") or 4096
    dirty = _stat(stats, "memory_dirty_rate")
    fields = {
        "dataProcessedBytes": _stat(stats, "data_processed"),
        "dataRemainingBytes": _stat(stats, "data_remaining"),
        "dataTotalBytes": _stat(stats, "data_total"),
        "memoryIteration": _stat(stats, "memory_iteration"),
        "dirtyMemoryRateBytes": dirty * page if dirty is not None else None,
        "transferRateBytes": _stat(stats, "memory_bps"),
        "elapsedMs": _stat(stats, "time_elapsed"),
        "downtimeMs": _stat(stats, "downtime"),
    }
    return {**{k: v for k, v in fields.items() if v is not None}, "updatedTimestamp": updated}


def compute_stand_in_stats(elapsed: float, duration: float, total_bytes: int) -> dict[str, int]:
    """Synthetic job statistics of a stand-in migration (named as such: no data moves), ``elapsed``
    of ``duration`` seconds over ``total_bytes`` of guest memory, one iteration."""
    share = 1.0 if duration <= 0 else min(1.0, max(0.0, elapsed / duration))
    processed = int(total_bytes * share)
    rate = int(total_bytes / duration) if duration > 0 else total_bytes
    return {"data_processed": processed, "data_remaining": total_bytes - processed, "data_total": total_bytes,
            "memory_iteration": 1, "memory_bps": rate, "memory_dirty_rate": 0,
            "time_elapsed": int(elapsed * 1000)}
