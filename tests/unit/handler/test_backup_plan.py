"""Backup decisions: disks by volume, the push-mode backup document, job outcomes and the
``BackupStatus`` answers (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.virt_handler.backup_plan import (
    CopyPlan,
    DiskSource,
    JobView,
    compute_backup_status,
    compute_backup_xml,
    compute_copy_plans,
    compute_job_outcome,
    compute_job_progress,
    compute_stale_parts,
    parse_backup_targets,
    parse_domain_disks,
)
from shared import events

DOMAIN_XML = """<domain type='kvm'><name>default_vm1</name><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='/vmis/u1/disk-root.qcow2'/><target dev='vda' bus='virtio'/><alias name='ua-root'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='/pvcs/default/data/disk.img'/><target dev='vdb' bus='virtio'/><alias name='ua-data'/></disk>
  <disk type='file' device='disk'><driver name='qemu' type='raw'/>
    <source file='/pvcs/default/old/disk.img'/><target dev='vdc' bus='virtio'/><alias name='ua-old'/></disk>
  <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
    <source file='/vmis/u1/noCloud.iso'/><target dev='sda' bus='sata'/><alias name='ua-cloudinit'/></disk>
  <disk type='file' device='disk'><source file='/other.img'/><target dev='vdz' bus='virtio'/></disk>
</devices></domain>"""


def test_disks_are_found_by_their_user_alias():
    disks = parse_domain_disks(DOMAIN_XML)
    assert sorted(disks) == ["cloudinit", "data", "old", "root"]
    assert disks["data"] == DiskSource("data", "vdb", "/pvcs/default/data/disk.img", "qcow2")
    assert disks["old"].format == "raw"


def copy(volume, target):
    return events.VolumeCopy(volume_name=volume, target_path=target)


def test_copy_plans_keep_the_request_order():
    plans = compute_copy_plans([copy("old", "/snap/b.qcow2"), copy("data", "/snap/a.qcow2")],
                               parse_domain_disks(DOMAIN_XML))
    assert [(p.disk.target, p.final_path, p.part_path) for p in plans] == [
        ("vdc", "/snap/b.qcow2", "/snap/b.qcow2.part"), ("vdb", "/snap/a.qcow2", "/snap/a.qcow2.part")]


@pytest.mark.parametrize("volumes, message", [
    pytest.param([copy("data", "/s/a"), copy("nope", "/s/b")], "the domain has no disk for volume 'nope'",
                 id="unknown-volume"),
    pytest.param([], "no volume to back up", id="nothing"),
    pytest.param([copy("data", "relative/a")], "target path 'relative/a' is not absolute", id="relative-target"),
])
def test_copy_plans_refuse_with_422(volumes, message):
    result = compute_copy_plans(volumes, parse_domain_disks(DOMAIN_XML))
    assert isinstance(result, events.CommandResult)
    assert (result.code, result.reason, result.message) == (422, "Invalid", message)


def test_one_push_backup_lists_every_disk_with_a_part_target_in_qcow2():
    disks = parse_domain_disks(DOMAIN_XML)
    document = compute_backup_xml([CopyPlan(disks["data"], "/snap/a.qcow2"), CopyPlan(disks["old"], "/snap/b.qcow2")])
    root = ET.fromstring(document)
    assert (root.tag, root.get("mode")) == ("domainbackup", "push")
    listed = [(d.get("name"), d.get("backup"), d.get("type"), d.find("target").get("file"),
               d.find("driver").get("type")) for d in root.findall("./disks/disk")]
    assert listed == [("vdb", "yes", "file", "/snap/a.qcow2.part", "qcow2"),
                      ("vdc", "yes", "file", "/snap/b.qcow2.part", "qcow2")]
    assert parse_backup_targets(document) == {"/snap/a.qcow2.part", "/snap/b.qcow2.part"}


@pytest.mark.parametrize("stats, expected", [
    pytest.param(None, (0, 0), id="none"),
    pytest.param({"type": 2, "disk_total": 100, "disk_processed": 40}, (40, 100), id="backup-job"),
    pytest.param({"type": 2, "data_total": 10, "data_processed": 5}, (5, 10), id="data-fields"),
    pytest.param({"type": 2}, (0, 0), id="no-sizes"),
])
def test_job_progress(stats, expected):
    assert compute_job_progress(stats) == expected


@pytest.mark.parametrize("completed, expected", [
    pytest.param({"type": 3, "operation": 9, "disk_total": 1024, "disk_processed": 1024},
                 JobView("Completed", 1024, 1024), id="completed"),
    pytest.param({"type": 5, "operation": 9, "disk_total": 1024, "disk_processed": 12},
                 JobView("Failed", 12, 1024, "the backup job was cancelled"), id="cancelled"),
    pytest.param({"type": 4, "operation": 9, "errmsg": "No space left on device"},
                 JobView("Failed", 0, 0, "No space left on device"), id="failed-with-message"),
    pytest.param(None, JobView("Failed", message="the backup job ended and libvirt kept no result"), id="unknown"),
])
def test_job_outcome(completed, expected):
    assert compute_job_outcome(completed) == expected


@pytest.mark.parametrize("job, finals, expected", [
    pytest.param(None, [True, True], ("Completed", 0, 0, ""), id="unknown-job-files-complete"),
    pytest.param(None, [True, False], ("NotFound", 0, 0, ""), id="unknown-job-one-copy-missing"),
    pytest.param(None, [], ("NotFound", 0, 0, ""), id="nothing-asked"),
    pytest.param(JobView("Running", 10, 100), [False, False], ("Running", 10, 100, ""), id="running"),
    pytest.param(JobView("Completed", 100, 100), [True, True], ("Completed", 100, 100, ""), id="completed"),
    pytest.param(JobView("Completed", 100, 100), [True, False], ("Failed", 100, 100, "a completed copy is missing"),
                 id="completed-but-a-copy-vanished"),
    pytest.param(JobView("Failed", 5, 100, "boom"), [False, False], ("Failed", 5, 100, "boom"), id="failed"),
])
def test_backup_status_answers(job, finals, expected):
    body = compute_backup_status(job, finals)
    assert (body["phase"], body["processedBytes"], body["totalBytes"], body["message"]) == expected


PARTS = ["/snap/a.qcow2.part", "/snap/b.qcow2.part"]


@pytest.mark.parametrize("phase, sure, in_use, expected", [
    pytest.param("NotFound", True, set(), PARTS, id="no-job-anywhere-removes-all"),
    pytest.param("NotFound", True, {"/snap/b.qcow2.part"}, PARTS[:1], id="a-job-of-this-handler-writes-one"),
    pytest.param("NotFound", False, set(), [], id="libvirt-not-asked-keeps"),
    pytest.param("Running", True, set(), [], id="running-keeps"),
    pytest.param("Failed", True, set(), [], id="failed-keeps-(its-watcher-removed-them)"),
    pytest.param("Completed", True, set(), [], id="completed-keeps"),
])
def test_stale_parts_of_a_backup_no_job_writes(phase, sure, in_use, expected):
    assert compute_stale_parts(phase, sure, PARTS, in_use) == expected
