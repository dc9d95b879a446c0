"""Freeze/Unfreeze and the backup commands against a real nats-server store and libvirt's test
driver (which freezes and thaws but has no backup: the STAND-IN BACKUP copies the files)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time

import pytest
from handler_helpers import VMIS, get_vmi, make_vmi, phase_of, wait_until

from services.virt_handler.agent import VmiAgent
from services.virt_handler.hypervisor_types import HypervisorError, LifecycleEvent
from shared import events

DOMAIN = "default_vm1"


@pytest.fixture
def agent_config(tmp_path):
    from services.virt_handler.agent import AgentConfig
    return AgentConfig(node_name="node1", state_dir=tmp_path / "state", domain_type="test", pvc_root=tmp_path / "pvcs",
                       resync_interval=1.0, shutdown_poll_interval=0.1, base_retry_delay=0.1, max_retry_delay=0.5)


class ThawSpy:
    """Counts the gateway's thaws; the first ``failures`` raise like a busy guest agent."""

    def __init__(self, hypervisor, failures=0):
        self.real, self.calls, self.failures = hypervisor.fs_thaw, [], failures
        hypervisor.fs_thaw = self

    async def __call__(self, name):
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise HypervisorError("Failed", "guest agent busy")
        return await self.real(name)


async def command(store, message):
    reply = await store.bus.request(events.handler_command_subject("node1"), events.encode(message), timeout=10)
    return events.decode_command_result(reply.data)


async def running_vmi(store, hypervisor, *, agent_connected=True, **kwargs):
    await store.create(VMIS, make_vmi(**kwargs))
    vmi = await wait_until(lambda: _running(store))
    if agent_connected:  # what libvirt's agent lifecycle event says when qemu-ga connects
        domain = await hypervisor.get_domain(DOMAIN)
        hypervisor._publish(LifecycleEvent(DOMAIN, domain.uuid, "AgentConnected", "1"))
        await wait_until(lambda: _with_agent(store))
    return vmi


async def _running(store):
    vmi = await get_vmi(store, "vm1")
    return vmi if phase_of(vmi) == "Running" else None


async def _with_agent(store):
    vmi = await get_vmi(store, "vm1")
    return any(c["type"] == "AgentConnected" for c in vmi["status"].get("conditions", []))


async def freeze_status(store):
    return ((await get_vmi(store, "vm1")) or {}).get("status", {}).get("fsFreezeStatus")


def deadline_file(agent, vmi):
    return agent.config.state_dir / "vmis" / vmi["metadata"]["uid"] / "freeze-deadline"


async def test_freeze_then_unfreeze(object_store, hypervisor, agent):
    vmi = await running_vmi(object_store, hypervisor)
    spy = ThawSpy(hypervisor)
    asked = time.time()
    result = await command(object_store, events.Freeze(namespace="default", name="vm1",
                                                       uid=vmi["metadata"]["uid"], unfreeze_timeout_seconds=60))
    assert (result.code, result.message) == (200, "")
    assert abs(float(deadline_file(agent, vmi).read_text()) - (asked + 60)) < 2
    assert await wait_until(lambda: freeze_status(object_store)) == "frozen"
    assert (await command(object_store, events.Unfreeze(namespace="default", name="vm1"))).ok
    assert len(spy.calls) == 1
    assert not deadline_file(agent, vmi).exists()
    await wait_until(lambda: _not_frozen(object_store))
    assert (await command(object_store, events.Unfreeze(namespace="default", name="vm1"))).ok  # idempotent


async def _not_frozen(store):
    return await freeze_status(store) is None


async def test_freeze_answers_per_state(object_store, hypervisor, agent):
    await running_vmi(object_store, hypervisor, agent_connected=False)
    freeze = events.Freeze(namespace="default", name="vm1", unfreeze_timeout_seconds=60)
    no_agent = await command(object_store, freeze)
    assert (no_agent.code, no_agent.reason, no_agent.message) == (409, "Conflict",
                                                                  "VMI does not have guest agent connected")
    assert (await command(object_store, events.Unfreeze(namespace="default", name="vm1"))).ok  # nothing to thaw
    assert (await command(object_store, events.Pause(namespace="default", name="vm1"))).ok
    paused = await command(object_store, freeze)
    assert (paused.code, paused.message) == (409, "VMI is paused")
    elsewhere = await command(object_store, events.Freeze(namespace="default", name="nope",
                                                          unfreeze_timeout_seconds=60))
    assert elsewhere.code == 404
    other_uid = await command(object_store, events.Unfreeze(namespace="default", name="vm1", uid="another"))
    assert other_uid.code == 404


async def test_the_unfreeze_timeout_thaws_without_unfreeze(object_store, hypervisor, agent):
    vmi = await running_vmi(object_store, hypervisor)
    spy = ThawSpy(hypervisor, failures=2)  # the first two thaws fail: retried
    agent.freezes.retry_delay = lambda _failures: 0.1
    started = time.monotonic()
    assert (await command(object_store, events.Freeze(namespace="default", name="vm1",
                                                      unfreeze_timeout_seconds=1))).ok
    assert await wait_until(lambda: freeze_status(object_store)) == "frozen"
    await wait_until(lambda: not deadline_file(agent, vmi).exists(), timeout=10)
    assert len(spy.calls) == 3
    assert spy.calls[0] - started >= 0.9  # not before the deadline
    await wait_until(lambda: _not_frozen(object_store))


@pytest.mark.parametrize("lead", [1.0, -0.5], ids=["restart-before-deadline", "restart-after-deadline"])
async def test_a_restarted_handler_thaws_at_the_recorded_deadline(object_store, hypervisor, agent_config, lead):
    """The first handler records a far deadline (60 s: its own timer cannot fire however slowly it
    stops under load) and is stopped (as after kill -9: the timer is gone, the record stays). The
    second handler runs on a wall clock that starts ``lead`` seconds before that deadline (negative:
    after it), so it must arm a timer for the rest (or thaw at once) from the record alone."""
    first = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await first.start()
    try:
        vmi = await running_vmi(object_store, hypervisor)
        assert (await command(object_store, events.Freeze(namespace="default", name="vm1",
                                                          unfreeze_timeout_seconds=60))).ok
        deadline = float(deadline_file(first, vmi).read_text())
    finally:
        await first.stop()
    spy = ThawSpy(hypervisor)
    await asyncio.sleep(0.2)
    assert deadline_file(first, vmi).exists() and not spy.calls
    second = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    offset = deadline - lead - time.time()  # fake wall clock = real one + offset
    second.freezes.wall_clock = lambda: time.time() + offset
    restarted = time.monotonic()  # the fake clock reads deadline - lead here
    await second.start()
    up_at = deadline - lead + (time.monotonic() - restarted)  # on the fake clock: start-up took its time
    try:
        await wait_until(lambda: not deadline_file(second, vmi).exists(), timeout=10)
        assert len(spy.calls) == 1, spy.calls
        thawed_at = deadline - lead + (spy.calls[0] - restarted)  # on the fake clock
        assert thawed_at >= deadline - 0.05  # never before the deadline
        # at the deadline, or at once (start-up thaws a passed one) when it had passed
        assert thawed_at - max(deadline, up_at) < 1.5, (thawed_at - deadline, up_at - deadline)
        await wait_until(lambda: _not_frozen(object_store))
    finally:
        await second.stop()


def make_qcow2(path, pattern: bytes, size=4 * 2**20):
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw")
    raw.write_bytes(pattern * (size // len(pattern)))
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
    raw.unlink()


def pvc_vmi(*claims):
    return dict(disks=[{"name": c, "disk": {"bus": "virtio"}} for c in claims],
                volumes=[{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims])


async def backup_phase(store, message):
    result = await command(store, message)
    assert result.ok, result
    return result.body["phase"]


async def test_stand_in_backup_copies_every_claim_disk(object_store, hypervisor, agent, tmp_path):
    pvcs = agent.config.pvc_root / "default"
    make_qcow2(pvcs / "data" / "disk.img", b"data-disk-content")
    make_qcow2(pvcs / "logs" / "disk.img", b"logs!")
    vmi = await running_vmi(object_store, hypervisor, agent_connected=False, **pvc_vmi("data", "logs"))
    xml = await hypervisor.get_domain_xml(DOMAIN)
    assert xml.count("type='qcow2'") >= 2 or xml.count('type="qcow2"') >= 2  # claims opened as qcow2
    copies = tmp_path / "volume-snapshots" / "default"
    volumes = [events.VolumeCopy(volume_name="data", target_path=str(copies / "snap-data.qcow2")),
               events.VolumeCopy(volume_name="logs", target_path=str(copies / "snap-logs.qcow2"))]
    begin = events.BackupVolumes(namespace="default", name="vm1", uid=vmi["metadata"]["uid"], backup_id="b1",
                                 volumes=volumes)
    started = await command(object_store, begin)
    assert started.ok and started.body["creationTime"].endswith("Z")
    status = events.BackupStatus(namespace="default", name="vm1", backup_id="b1", volumes=volumes)
    await wait_until(lambda: _phase_is(object_store, status, "Completed"), timeout=30)
    for volume, claim in ((volumes[0], "data"), (volumes[1], "logs")):
        compared = subprocess.run(["qemu-img", "compare", "-q", str(pvcs / claim / "disk.img"), volume.target_path])
        assert compared.returncode == 0, f"copy of {claim} differs"
        assert subprocess.run(["qemu-img", "info", "--output=json", volume.target_path], capture_output=True,
                              text=True, check=True).stdout.count('"format": "qcow2"') == 1
    assert not list(copies.glob("*.part"))
    body = (await command(object_store, status)).body
    assert body["processedBytes"] == body["totalBytes"] > 0
    again = await command(object_store, begin)  # idempotent by backup id
    assert again.ok and again.body["creationTime"] == started.body["creationTime"]


async def _phase_is(store, message, phase):
    return await backup_phase(store, message) == phase


async def test_backup_answers(object_store, hypervisor, agent, tmp_path):
    make_qcow2(agent.config.pvc_root / "default" / "data" / "disk.img", b"x")
    vmi = await running_vmi(object_store, hypervisor, agent_connected=False, **pvc_vmi("data"))
    target = str(tmp_path / "copies" / "c.qcow2")
    unknown = await command(object_store, events.BackupVolumes(
        namespace="default", name="vm1", backup_id="b2",
        volumes=[events.VolumeCopy(volume_name="nope", target_path=target)]))
    assert (unknown.code, unknown.message) == (422, "the domain has no disk for volume 'nope'")
    volumes = [events.VolumeCopy(volume_name="data", target_path=target)]
    assert await backup_phase(object_store, events.BackupStatus(namespace="default", name="vm1", backup_id="b2",
                                                                volumes=volumes)) == "NotFound"
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "c.qcow2.part").write_bytes(b"partial")
    assert (await command(object_store, events.AbortBackup(namespace="default", name="vm1", backup_id="b2",
                                                           volumes=volumes))).ok
    assert not (tmp_path / "copies" / "c.qcow2.part").exists()
    await hypervisor.destroy(DOMAIN)
    await wait_until(lambda: _final(object_store))
    stopped = await command(object_store, events.BackupVolumes(namespace="default", name="vm1",
                                                               uid=vmi["metadata"]["uid"], backup_id="b3",
                                                               volumes=volumes))
    assert (stopped.code, stopped.message) == (409, "VMI is not running")


async def test_a_backup_without_job_loses_its_partial_copies(object_store, hypervisor, agent, tmp_path):
    """As after a handler killed during the copy: the ``.part`` stays, no job writes it; the
    NotFound status removes it (the final copy of another volume is kept)."""
    make_qcow2(agent.config.pvc_root / "default" / "data" / "disk.img", b"x")
    await running_vmi(object_store, hypervisor, agent_connected=False, **pvc_vmi("data"))
    copies = tmp_path / "copies"
    copies.mkdir()
    part = copies / "c.qcow2.part"
    part.write_bytes(b"partial")
    (copies / "other.qcow2").write_bytes(b"whole")
    status = events.BackupStatus(namespace="default", name="vm1", backup_id="b9",
                                 volumes=[events.VolumeCopy(volume_name="data", target_path=str(copies / "c.qcow2"))])
    assert await backup_phase(object_store, status) == "NotFound"
    assert not part.exists()
    assert (copies / "other.qcow2").read_bytes() == b"whole"


async def _final(store):
    return phase_of(await get_vmi(store, "vm1")) in ("Failed", "Succeeded")


async def test_completed_copies_are_reported_after_a_handler_restart(object_store, hypervisor, agent_config,
                                                                     tmp_path):
    make_qcow2(agent_config.pvc_root / "default" / "data" / "disk.img", b"y")
    volumes = [events.VolumeCopy(volume_name="data", target_path=str(tmp_path / "copies" / "r.qcow2"))]
    status = events.BackupStatus(namespace="default", name="vm1", backup_id="r1", volumes=volumes)
    first = VmiAgent(object_store, hypervisor, agent_config, bus=object_store.bus)
    await first.start()
    try:
        await running_vmi(object_store, hypervisor, agent_connected=False, **pvc_vmi("data"))
        assert (await command(object_store, events.BackupVolumes(namespace="default", name="vm1", backup_id="r1",
                                                                 volumes=volumes))).ok
        await wait_until(lambda: _phase_is(object_store, status, "Completed"), timeout=30)
    finally:
        await first.stop()
    second = VmiAgent(object_store, hypervisor, dataclasses.replace(agent_config), bus=object_store.bus)
    await second.start()
    try:
        assert await backup_phase(object_store, status) == "Completed"  # from the files
        again = await command(object_store, events.BackupVolumes(namespace="default", name="vm1", backup_id="r1",
                                                                 volumes=volumes))
        assert again.ok and again.body["creationTime"]
    finally:
        await second.stop()
