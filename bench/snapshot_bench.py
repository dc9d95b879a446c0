"""B9: snapshot and restore of a VM's 1 GiB qcow2 volume on one host, beside the raw copies.

The volume: a qcow2 file of ``--volume-mib`` MiB (default 1024) written in full from the host
before the guest starts (a 4 MiB random block repeated: every cluster allocated, nothing QEMU
could skip as zero), attached to the demo guest as a virtio disk with serial ``data1``
(a PVC in the API part). Two parts in one run, each ``--count`` times after one warm-up:

* **Floor** (libvirt and qemu-img alone, no kubevirt-py): the guest as a libvirt domain on the
  system daemon; an *online copy* is what ``virsh domfsfreeze`` + ``virsh backup-begin`` (push,
  full, qcow2 target) + ``virsh domfsthaw`` do, through the same libvirt calls
  (``virDomainFSFreeze``, ``virDomainBackupBegin``, ``virDomainFSThaw``), until the backup job
  ends (libvirt's job info polled every 10 ms) and the ``.part`` file is renamed; an *offline
  copy* is ``qemu-img convert -O qcow2`` of the volume (what a snapshot of a stopped VM and the
  restore of a claim do); *restore to running* is that copy plus ``virDomainCreateXML`` of a
  domain using it until libvirt reports it running.
* **API** (:mod:`bench.snapshot_bench_api`, ``virtctl up``): a PVC of the volume's size, filled
  the same way, a VM using it; per sample a ``VirtualMachineSnapshot`` is created through
  virt-api and polled until ``status.readyToUse``, then a ``VirtualMachineRestore`` to a new VM
  name is created and polled until that VM's VMI is ``Running`` (both: client wall time).

Reported: p50/p95 (nearest rank), MiB/s, the ratios API/floor (online snapshot vs online copy;
restore vs restore-to-running and vs the offline copy alone), the host load. Usage::

    .venv/bin/python bench/snapshot_bench.py                       # floor + API, 3 samples each
    .venv/bin/python bench/snapshot_bench.py --parts floor --count 5 --json /tmp/b9.json

Needs root, QEMU and libvirtd (started when not running, stopped again if started here). The
host's page cache holds the volume in both parts (same conditions; not a disk benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.migration_bench import LoadMeter, log_has, summarize, wait_for  # noqa: E402
from bench.snapshot_bench_figures import compute_ratios, report  # noqa: E402

CACHE = Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache"))
READY = b"demo guest ready"
BOOT_TIMEOUT = 240.0
COPY_TIMEOUT = 600.0
SERIAL = "data1"
BLOCK = 4 * 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); ``parts`` becomes a list, checked."""
    parser = argparse.ArgumentParser(prog="bench/snapshot_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3, help="samples per measurement (after one warm-up)")
    parser.add_argument("--parts", default="floor,api", help="comma list of floor, api")
    parser.add_argument("--volume-mib", type=int, default=1024, help="size of the volume, written in full (MiB)")
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(args.parts) - {"floor", "api"})
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)} (floor, api)")
    if args.count < 1 or args.volume_mib < BLOCK // 2**20 or args.volume_mib % (BLOCK // 2**20):
        parser.error("--count must be >= 1 and --volume-mib a positive multiple of 4")
    return args


# -- the volume -----------------------------------------------------------------------------------
def apply_fill_file(path: Path, mib: int) -> Path:
    """A raw file of ``mib`` MiB: one 4 MiB random block repeated (no zero cluster)."""
    block = os.urandom(BLOCK)
    with open(path, "wb") as out:
        for _ in range(mib * 2**20 // BLOCK):
            out.write(block)
    return path


def apply_volume(fill: Path, target: Path, *, existing: bool = False) -> float:
    """``qemu-img convert`` of ``fill`` (raw) into ``target`` as qcow2 (``existing``: into the
    qcow2 file already there, ``-n``); returns the seconds it took."""
    args = ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", *(["-n"] if existing else []), str(fill),
            str(target)]
    t0 = time.monotonic()
    subprocess.run(args, check=True, timeout=COPY_TIMEOUT)
    return time.monotonic() - t0


def offline_copy(source: Path, target: Path) -> float:
    """The raw offline copy: ``qemu-img convert -O qcow2 source target.part`` then rename; seconds."""
    part = target.with_name(target.name + ".part")
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-q", "-U", "-O", "qcow2", str(source), str(part)], check=True,
                   timeout=COPY_TIMEOUT)
    os.replace(part, target)
    return time.monotonic() - t0


def backup_xml(disks: list[str], target_disk: str, target: Path) -> str:
    """A push-mode full ``<domainbackup>`` copying ``target_disk`` to ``target`` (qcow2), every
    other disk of ``disks`` excluded."""
    entries = "".join(
        f"<disk name='{d}' backup='yes' type='file'><target file='{target}'/><driver type='qcow2'/></disk>"
        if d == target_disk else f"<disk name='{d}' backup='no'/>" for d in disks)
    return f"<domainbackup mode='push'><disks>{entries}</disks></domainbackup>"


def online_copy(dom, disks: list[str], target_disk: str, target: Path) -> dict:
    """Freeze, ``virDomainBackupBegin``, thaw, wait for the job's end, rename: the figures (s)."""
    import libvirt

    part = target.with_name(target.name + ".part")
    t0 = time.monotonic()
    dom.fsFreeze()
    t1 = time.monotonic()
    dom.backupBegin(backup_xml(disks, target_disk, part), None, 0)
    t2 = time.monotonic()
    dom.fsThaw()
    t3 = time.monotonic()
    deadline = t3 + COPY_TIMEOUT
    while dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
        if time.monotonic() > deadline:
            dom.abortJob()
            raise TimeoutError("the backup job did not end")
        time.sleep(0.01)
    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if stats.get("type") != libvirt.VIR_DOMAIN_JOB_COMPLETED:
        raise RuntimeError(f"backup job ended {stats.get('type')}: {stats.get('errmsg')}")
    os.replace(part, target)
    t4 = time.monotonic()
    return {"total_s": t4 - t0, "freeze_s": t1 - t0, "begin_s": t2 - t1, "frozen_s": t3 - t0, "copy_s": t4 - t2}


def agent_ping(dom) -> bool:
    """True when the guest agent of libvirt domain ``dom`` answers ``guest-ping``."""
    import libvirt
    import libvirt_qemu

    try:
        libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-ping"}', 5, 0)
        return True
    except libvirt.libvirtError:
        return False


# -- floor ----------------------------------------------------------------------------------------
def floor_vmi(name: str, claim: str) -> dict:
    """The demo guest (256 MiB, 1 core) with the volume as PVC ``claim`` on a disk with a serial."""
    from guest.demo_guest import DEMO_DISK_REF

    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
            "spec": {"domain": {"memory": {"guest": "256Mi"}, "cpu": {"cores": 1},
                                "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}},
                                                      {"name": "data", "serial": SERIAL, "disk": {"bus": "virtio"}}]}},
                     "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}},
                                 {"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def _domain_xml(vmi: dict, ctx, volume: Path) -> tuple[str, list[str], str]:
    """The converted domain XML with the volume's driver forced to qcow2; its disk targets and
    the target of the volume's disk."""
    from xml.etree import ElementTree

    from services.virt_handler.domain import apply_disk_preparation, compute_domain_xml

    apply_disk_preparation(vmi, ctx)
    root = ElementTree.fromstring(compute_domain_xml(vmi, ctx))
    disks, data = [], ""
    for disk in root.iter("disk"):
        dev = disk.find("target").get("dev")
        disks.append(dev)
        source = disk.find("source")
        if source is not None and source.get("file") == str(volume):
            disk.find("driver").set("type", "qcow2")
            data = dev
    return ElementTree.tostring(root, encoding="unicode"), disks, data


def run_floor(args, guest) -> dict:
    """The floor part (module docstring): {"online", "offline", "restore_to_running", "fill_s", "load"}."""
    import libvirt

    from guest.demo_guest import apply_demo_guest_import
    from services.virt_handler import kvm_probe
    from services.virt_handler.domain import CONSOLE_LOG, ConversionContext, cleanup
    from shared import libvirtd_users
    from shared.images import ImageStore

    libvirtd_users.apply_shared_system_daemons()
    base = Path(tempfile.mkdtemp(prefix="kvsb-", dir="/var/tmp"))
    base.chmod(0o755)
    conn = libvirt.open("qemu:///system")
    domains, vmis = [], []
    try:
        store = ImageStore(base / "images")
        apply_demo_guest_import(store, guest)
        claim_dir = base / "pvcs" / "bench" / "data"
        claim_dir.mkdir(parents=True)
        for d in (base / "pvcs", claim_dir.parent, claim_dir):
            d.chmod(0o755)
        volume = claim_dir / "disk.img"
        fill_s = apply_volume(apply_fill_file(base / "fill.raw", args.volume_mib), volume)
        copies = base / "copies"
        copies.mkdir(mode=0o755)
        copies.chmod(0o777)  # QEMU (libvirt-qemu) writes the backup target here
        domain_type = kvm_probe.compute_domain_type()

        def context(name: str):
            return ConversionContext(domain_type=domain_type, vmi_dir=base / "vmis" / name, images=store,
                                     pvc_root=base / "pvcs")

        meter = LoadMeter().start()
        offline = [{"total_s": offline_copy(volume, copies / f"offline-{i}.qcow2")} for i in range(args.count + 1)]
        token = secrets.token_hex(3)
        vmi, ctx = floor_vmi(f"b9-floor-{token}", "data"), context(f"b9-floor-{token}")
        vmis.append((vmi, ctx))
        xml, disks, data_disk = _domain_xml(vmi, ctx, volume)
        dom = conn.createXML(xml, 0)
        domains.append(dom)
        log = ctx.vmi_dir / CONSOLE_LOG
        wait_for(lambda: log_has(log, READY), BOOT_TIMEOUT, "the floor guest ready")
        wait_for(lambda: agent_ping(dom), BOOT_TIMEOUT, "the floor guest's agent")
        online = []
        for i in range(args.count + 1):
            target = copies / f"online-{i}.qcow2"
            online.append(online_copy(dom, disks, data_disk, target))
            if i == 0:  # the warm-up copy is checked: the same bytes as the volume
                subprocess.run(["qemu-img", "compare", "-q", "-U", str(target), str(volume)], check=True,
                               timeout=COPY_TIMEOUT)
            target.unlink()
        restore = []
        for i in range(args.count + 1):
            name = f"b9-restore-{token}-{i}"
            claim = base / "pvcs" / "bench" / name
            claim.mkdir(mode=0o755)
            copy_s = offline_copy(copies / "offline-0.qcow2", claim / "disk.img")
            rvmi, rctx = floor_vmi(name, name), context(name)
            vmis.append((rvmi, rctx))
            rxml = _domain_xml(rvmi, rctx, claim / "disk.img")[0]
            t0 = time.monotonic()
            rdom = conn.createXML(rxml, 0)
            start_s = time.monotonic() - t0
            restore.append({"total_s": copy_s + start_s, "copy_s": copy_s, "start_s": start_s})
            rdom.destroy()
        load = meter.stop()
        samples = {"online": online[1:], "offline": offline[1:], "restore_to_running": restore[1:]}
        if args.verbose:
            for key, rows in samples.items():
                for row in rows:
                    print(f"  floor {key}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.items()))
        result = {key: {"samples": rows, "summary": summarize(rows, tuple(rows[0]))} for key, rows in samples.items()}
        result.update(fill_s=round(fill_s, 2), load=load)
        return result
    finally:
        for dom in domains:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        for vmi, ctx in vmis:
            cleanup(vmi, ctx)
        conn.close()
        libvirtd_users.apply_leave_shared_system_daemons()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Run the parts asked for, print the report (and write ``--json``)."""
    from guest.demo_guest import apply_demo_guest_build

    args = parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    guest = apply_demo_guest_build(CACHE)
    result: dict = {"count": args.count, "volume_mib": args.volume_mib}
    if "floor" in args.parts:
        result["floor"] = run_floor(args, guest)
    if "api" in args.parts:
        from bench.snapshot_bench_api import run_api

        result["api"] = run_api(args, guest)
    result["ratios"] = compute_ratios(result)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
