"""B5: demo guest boot latency under libvirt (../shared/docs/performance-anchors.md B5).

Measures, for the demo guest converted from a VMI by services.virt_handler.domain:
  (a) create -> domain RUNNING   (define + create on qemu:///system; KubeVirt's "Running")
  (b) create -> first console line, and create -> init marker ("kubevirt-py demo guest")
over N sequential starts, then M concurrent starts, as p50/p95, with the B5 anchors printed
beside them (QEMU + KVM + SeaBIOS about 245 ms to init; Firecracker <= 125 ms).

Run:  .venv/bin/python bench/boot_bench.py [--runs 20] [--concurrent 10] [--state-dir DIR]
      .venv/bin/python bench/boot_bench.py --quick        (5 sequential, 3 concurrent)
Needs root, QEMU and libvirt (started here if not running, stopped again if started here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import libvirt  # noqa: E402

from guest.demo_guest import DEMO_DISK_REF, apply_demo_guest_build, apply_demo_guest_import  # noqa: E402
from services.virt_handler import kvm_probe  # noqa: E402
from services.virt_handler.domain import (CONSOLE_LOG, ConversionContext, apply_disk_preparation,  # noqa: E402
                                          cleanup, compute_domain_xml)
from shared import libvirtd  # noqa: E402
from shared.images import ImageStore  # noqa: E402

ANCHOR_KVM_INIT_MS = 245.0
ANCHOR_FIRECRACKER_MS = 125.0
GOAL_RUNNING_P95_MS = 500.0
MARKER = b"kubevirt-py demo guest"
TIMEOUT = 180.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def make_vmi(namespace: str, name: str) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {"domain": {"memory": {"guest": "256Mi"}, "cpu": {"cores": 1},
                            "devices": {"disks": [{"name": "containerdisk", "disk": {"bus": "virtio"}}]}},
                 "volumes": [{"name": "containerdisk", "containerDisk": {"image": DEMO_DISK_REF}}]},
    }


def boot_once(store: ImageStore, node_dir: Path, domain_type: str, tag: str) -> dict[str, float]:
    """One start; returns milliseconds for running / first_line / marker."""
    namespace, name = "bench", f"boot-{tag}-{uuid.uuid4().hex[:6]}"
    vmi = make_vmi(namespace, name)
    ctx = ConversionContext(domain_type=domain_type, vmi_dir=node_dir / "vmis" / name, images=store)
    conn = libvirt.open("qemu:///system")
    domain = None
    try:
        apply_disk_preparation(vmi, ctx)
        xml = compute_domain_xml(vmi, ctx)
        log = ctx.vmi_dir / CONSOLE_LOG
        t0 = time.monotonic()
        domain = conn.defineXML(xml)
        domain.create()
        running = time.monotonic() - t0
        first_line = marker = None
        while time.monotonic() - t0 < TIMEOUT and marker is None:
            data = log.read_bytes() if log.exists() else b""
            if first_line is None and b"\n" in data.lstrip(b"\r\n"):
                first_line = time.monotonic() - t0
            if MARKER in data:
                marker = time.monotonic() - t0
                first_line = first_line or marker
            time.sleep(0.01)
        if marker is None:
            tail = (log.read_bytes() if log.exists() else b"")[-400:].decode(errors="replace")
            try:
                state = domain.state()
            except libvirt.libvirtError as exc:
                state = f"gone: {exc.get_error_message()}"  # removed by another process
            raise RuntimeError(f"{name}: no init marker within {TIMEOUT} s (domain state {state}, "
                               f"console tail {tail!r})")
        return {"running": running * 1000, "first_line": first_line * 1000, "marker": marker * 1000}
    finally:
        if domain is not None:
            try:
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
            except libvirt.libvirtError:
                pass  # already gone
        conn.close()
        cleanup(vmi, ctx)


def report(title: str, samples: list[dict[str, float]], wall: float | None = None) -> None:
    print(f"\n{title}: {len(samples)} starts" + (f", wall {wall:.1f} s" if wall else ""))
    print(f"  {'metric':<28}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}   vs B5 anchor")
    for key, label in (("running", "create -> RUNNING (a)"), ("first_line", "create -> first console line"),
                       ("marker", "create -> init marker (b)")):
        values = [s[key] for s in samples]
        p50, p95 = percentile(values, 50), percentile(values, 95)
        if key == "running":
            ratio = f"goal p95 <= {GOAL_RUNNING_P95_MS:.0f} ms: {'met' if p95 <= GOAL_RUNNING_P95_MS else 'missed'}"
        else:
            ratio = (f"{p50 / ANCHOR_KVM_INIT_MS:.1f}x QEMU+KVM {ANCHOR_KVM_INIT_MS:.0f} ms, "
                     f"{p50 / ANCHOR_FIRECRACKER_MS:.1f}x Firecracker {ANCHOR_FIRECRACKER_MS:.0f} ms")
        print(f"  {label:<28}{p50:>10.0f}{p95:>10.0f}{max(values):>10.0f}   {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="B5 demo guest boot latency")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="5 sequential and 3 concurrent starts")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("KUBEVIRT_PY_TEST_CACHE", "/var/tmp/kubevirt-py-test-cache")))
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.concurrent = 5, 3

    daemons = libvirtd.apply_system_daemons()
    node_dir = Path(tempfile.mkdtemp(prefix="kubevirt-py-bench-", dir="/var/tmp"))
    node_dir.chmod(0o755)
    try:
        guest = apply_demo_guest_build(args.state_dir)
        store = ImageStore(node_dir / "images")
        apply_demo_guest_import(store, guest)
        domain_type = kvm_probe.compute_domain_type()
        print(f"B5 boot bench: domain type {domain_type!r}, demo guest kernel {guest.kernel_version}, "
              f"256 MiB, 1 vCPU, {os.cpu_count()} host cores, load average before {os.getloadavg()[0]:.2f} "
              "(other work on the host slows TCG guests directly)")
        boot_once(store, node_dir, domain_type, "warmup")  # libvirt capability cache warm, page cache warm

        sequential = []
        for i in range(args.runs):
            try:
                sequential.append(boot_once(store, node_dir, domain_type, f"s{i}"))
            except RuntimeError as exc:
                print(f"sequential start {i} failed: {exc}")
        report("sequential", sequential)

        results: list[dict[str, float]] = []
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                results.append(boot_once(store, node_dir, domain_type, f"c{i}"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        start = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        if errors:
            print(f"concurrent: {len(errors)} failed: {errors[0]}")
        if results:
            report("concurrent", results, wall)
            single = statistics.median(s["marker"] for s in sequential) / 1000
            print(f"  {args.concurrent} concurrent starts reached the init marker in {wall:.1f} s = "
                  f"{wall / single:.1f}x a single start (goal <= 3x)")
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(node_dir, ignore_errors=True)
        libvirtd.apply_stop(daemons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
