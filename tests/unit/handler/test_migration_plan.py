"""migration_plan and migration_status: options, the migrateToURI3 call, the destination XML, the
timeouts, progress samples and the status writes of both handlers (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.virt_handler import migration_plan as plan
from services.virt_handler import migration_status as ms
from shared.libvirtd import compute_migration_uri

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)

DOMAIN_XML = """<domain type='qemu'><name>default_vm1</name>
<devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='/var/a/vmis/u1/disk-containerdisk.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='cdrom'><source file='/var/a/vmis/u1/noCloud.iso'/><target dev='sda' bus='sata'/>
    <readonly/></disk>
  <disk type='file' device='disk'><source file='/srv/shared.img'/><target dev='vdb'/><shareable/></disk>
  <serial type='pty'><log file='/var/a/vmis/u1/console.log' append='on'/></serial>
</devices>
<os><kernel>/var/a/images/vmlinuz</kernel><nvram>/var/a/vmis/u1/nvram.fd</nvram></os>
<description>/var/a/vmis/u10 is another VMI</description>
</domain>"""


def test_destination_xml_rewrites_only_the_vmi_directory():
    out = plan.compute_destination_xml(DOMAIN_XML, "/var/a/vmis/u1", "/var/b/vmis/u1/")
    assert "/var/b/vmis/u1/disk-containerdisk.qcow2" in out and "/var/b/vmis/u1/noCloud.iso" in out
    assert "/var/b/vmis/u1/console.log" in out and "<nvram>/var/b/vmis/u1/nvram.fd</nvram>" in out
    assert "/var/a/vmis/u1/" not in out
    assert "/var/a/images/vmlinuz" in out and "/var/a/vmis/u10 is another VMI" in out
    assert plan.compute_migrated_disks(DOMAIN_XML) == ["vda"]


OPTION_ROWS = [
    (None, plan.MigrationOptions()),
    ({"bandwidthPerMigration": "64Mi", "completionTimeoutPerGiB": 10, "progressTimeout": 5, "maxDowntimeMs": 300,
      "allowAutoConverge": True, "allowPostCopy": True, "allowWorkloadDisruption": True},
     plan.MigrationOptions(64, 10, 5, 300, True, True, True)),
    ({"bandwidthPerMigration": "0"}, plan.MigrationOptions()),
    ({"bandwidthPerMigration": "100Ki"}, plan.MigrationOptions(bandwidth_mib=1)),
    ({"bandwidthPerMigration": "nonsense"}, plan.MigrationOptions()),
]


@pytest.mark.parametrize("conf,expected", OPTION_ROWS)
def test_options(conf, expected):
    assert plan.compute_migration_options(conf) == expected


def test_request_with_block_migration_and_options():
    options = plan.MigrationOptions(bandwidth_mib=8, allow_auto_converge=True, allow_post_copy=True)
    request = plan.compute_migration_request(options, "qemu+unix:///system?socket=/x", "127.0.0.1", "<domain/>",
                                             ["vda"])
    assert request.dest_uri == "qemu+unix:///system?socket=/x"
    assert request.params == {"migrate_uri": "tcp://127.0.0.1", "destination_xml": "<domain/>", "bandwidth": 8,
                              "migrate_disks": ["vda"], "disks_uri": "tcp://127.0.0.1"}
    assert request.flags == ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE", "UNSAFE", "NON_SHARED_INC",
                             "AUTO_CONVERGE", "POSTCOPY")
    plain = plan.compute_migration_request(plan.MigrationOptions(), "u", "10.0.0.2", "<d/>", [])
    assert plain.params == {"migrate_uri": "tcp://10.0.0.2", "destination_xml": "<d/>"}
    assert "NON_SHARED_INC" not in plain.flags


GI = 2**30
TIMEOUT_ROWS = [
    # options, elapsed, since_progress, total, mode -> step kind (None: nothing)
    (plan.MigrationOptions(), 10, 10, GI, "PreCopy", None),
    (plan.MigrationOptions(progress_timeout=5), 10, 6, GI, "PreCopy", "abort"),
    (plan.MigrationOptions(completion_timeout_per_gib=2), 3, 0, GI, "PreCopy", "abort"),
    (plan.MigrationOptions(completion_timeout_per_gib=2), 3, 0, GI + 1, "PreCopy", None),  # 2 GiB -> 4 s
    (plan.MigrationOptions(completion_timeout_per_gib=2, allow_post_copy=True), 3, 0, GI, "PreCopy", "post-copy"),
    (plan.MigrationOptions(completion_timeout_per_gib=2, allow_workload_disruption=True), 3, 0, GI, "PreCopy",
     "pause"),
    (plan.MigrationOptions(completion_timeout_per_gib=2, allow_workload_disruption=True), 3, 0, GI, "Paused", None),
    (plan.MigrationOptions(progress_timeout=1), 10, 6, GI, "PostCopy", None),
    (plan.MigrationOptions(progress_timeout=0, completion_timeout_per_gib=0), 1e6, 1e6, GI, "PreCopy", None),
]


@pytest.mark.parametrize("options,elapsed,since,total,mode,kind", TIMEOUT_ROWS)
def test_timeouts(options, elapsed, since, total, mode, kind):
    step = plan.compute_timeout_step(options, elapsed=elapsed, since_progress=since, data_total_bytes=total, mode=mode)
    assert (step.kind if step else None) == kind
    if kind == "abort":
        assert "aborted" in step.reason


def test_progress_from_job_stats():
    stats = {"type": 2, "data_processed": 10, "data_remaining": 20, "data_total": 30, "memory_iteration": 2,
             "memory_dirty_rate": 3, "memory_page_size": 4096, "memory_bps": 99, "time_elapsed": 700}
    assert plan.compute_progress(stats, "T") == {
        "dataProcessedBytes": 10, "dataRemainingBytes": 20, "dataTotalBytes": 30, "memoryIteration": 2,
        "dirtyMemoryRateBytes": 3 * 4096, "transferRateBytes": 99, "elapsedMs": 700, "updatedTimestamp": "T"}
    assert plan.compute_stand_in_stats(0.5, 1.0, 1000)["data_remaining"] == 500
    assert plan.compute_stand_in_stats(2.0, 1.0, 1000)["data_remaining"] == 0


def vmi(**state):
    return {"metadata": {"name": "vm1", "namespace": "default", "labels": {"kubevirt.io/nodeName": "a", "x": "y"}},
            "status": {"phase": "Running", "nodeName": "a",
                       "migrationState": {"migrationUid": "m1", "sourceNode": "a", "targetNode": "b", **state}}}


def test_status_writes_touch_only_their_migration():
    assert ms.compute_target_ready(vmi(), "m1", "127.0.0.1")["migrationState"]["targetNodeAddress"] == "127.0.0.1"
    assert "targetNodeAddress" not in ms.compute_target_ready(vmi(), "other", "127.0.0.1")["migrationState"]
    started = ms.compute_source_started(vmi(), "m1", NOW)["migrationState"]
    assert (started["startTimestamp"], started["mode"]) == ("2026-01-02T03:04:05Z", "PreCopy")
    assert ms.compute_source_started(vmi(startTimestamp="T0"), "m1", NOW)["migrationState"]["startTimestamp"] == "T0"
    failed = ms.compute_source_outcome(vmi(progress={"dataTotalBytes": 1}), "m1", succeeded=False, reason="r",
                                       abort_status="Succeeded", now=NOW, progress={"downtimeMs": 3})["migrationState"]
    assert (failed["completed"], failed["failed"], failed["failureReason"], failed["abortStatus"]) == \
        (True, True, "r", "Succeeded")
    assert failed["progress"] == {"dataTotalBytes": 1, "downtimeMs": 3}
    done = ms.compute_source_outcome(vmi(), "m1", succeeded=True, reason=None, abort_status=None, now=NOW)
    assert done["migrationState"]["completed"] is True and "failed" not in done["migrationState"]
    again = ms.compute_source_outcome(vmi(completed=True, failed=True), "m1", succeeded=True, reason=None,
                                      abort_status=None, now=NOW)
    assert again["migrationState"]["failed"] is True  # an ended migration is never rewritten
    assert ms.compute_progress_status(vmi(completed=True), "m1", {"a": 1})["migrationState"].get("progress") is None


def test_claim_is_one_write_of_node_label_and_state():
    claimed = ms.compute_claimed_vmi(vmi(completed=True, endTimestamp="E"), "m1", "b", now=NOW,
                                     method="BlockMigration", progress={"downtimeMs": 25})
    assert claimed["status"]["nodeName"] == "b" and claimed["status"]["migrationMethod"] == "BlockMigration"
    assert claimed["metadata"]["labels"] == {"kubevirt.io/nodeName": "b", "x": "y"}
    state = claimed["status"]["migrationState"]
    assert (state["completed"], state["endTimestamp"], state["targetNodeDomainDetected"]) == (True, "E", True)
    assert state["targetNodeDomainReadyTimestamp"] == "2026-01-02T03:04:05.678901Z"
    assert state["progress"] == {"downtimeMs": 25}
    assert ms.compute_claimed_vmi(vmi(failed=True), "m1", "b", now=NOW, method="m") is None
    assert ms.compute_claimed_vmi(vmi(), "other", "b", now=NOW, method="m") is None
    assert ms.compute_claimed_vmi(vmi(), "m1", "c", now=NOW, method="m") is None
    moved = vmi()
    moved["status"]["nodeName"] = "b"
    assert ms.compute_claimed_vmi(moved, "m1", "b", now=NOW, method="m") is None


def test_migration_uri_of_a_node():
    assert compute_migration_uri("qemu:///system", 42) == \
        "qemu+unix:///system?socket=/proc/42/root/run/libvirt/libvirt-sock"
    assert compute_migration_uri("qemu:///system", None) == "qemu:///system"
    node = "qemu+unix:///system?socket=/run/kubevirt-py/nodes/abc/libvirt-sock"
    assert compute_migration_uri(node, 42) == node
    assert compute_migration_uri("test:///tmp/h.xml", 42) == "test:///tmp/h.xml"
