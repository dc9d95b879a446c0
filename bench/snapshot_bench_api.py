"""B9, the API part of bench/snapshot_bench.py: snapshots and restores through virt-api on ``virtctl up``.

A PersistentVolumeClaim of ``--volume-mib`` MiB (the local provisioner makes its qcow2 file),
written in full from the host before the VM starts (``qemu-img convert -n`` of the same fill as
the floor), is the data disk (serial ``data1``) of a VM made from ``examples/vm-demo.yaml``. Per
sample, with the client's wall time (polled every 50 ms):

* ``snapshot``: create a ``VirtualMachineSnapshot`` of the running VM -> ``status.readyToUse``
  (``total_s``); ``ready_s`` is the same span from the object's own stamps (creationTimestamp ->
  the Ready condition's lastTransitionTime, whole seconds);
* ``restore``: create a ``VirtualMachineRestore`` of the first snapshot to a new VM name ->
  ``status.complete`` (``complete_s``) -> ``spec.runStrategy: Always`` (what ``virtctl start``
  does to a halted VM) -> its VMI ``Running`` (``total_s``); the new VM is deleted afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

from bench.migration_bench import LoadMeter, parse_time, summarize, wait_for
from bench.migration_bench_api import virtctl
from bench.snapshot_bench import BOOT_TIMEOUT, COPY_TIMEOUT, SERIAL, apply_fill_file, apply_volume

GROUP, VERSION = "snapshot.kubevirt.io", "v1beta1"
POLL = 0.05


def vm_manifest(name: str, claim: str) -> dict:
    """examples/vm-demo.yaml named ``name`` with the data disk (serial ``data1``) on ``claim``."""
    import yaml

    from bench.migration_bench import ROOT

    vm = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
    vm["metadata"] = {"name": name, "labels": {"app": name}}
    spec = vm["spec"]["template"]["spec"]
    vm["spec"]["template"]["metadata"]["labels"] = {"kubevirt.io/vm": name}
    spec["domain"]["devices"]["disks"].append({"name": "data", "serial": SERIAL, "disk": {"bus": "virtio"}})
    spec["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
    return vm


class Api:
    """The few calls the bench makes to virt-api (kubernetes client on the installation's kubeconfig)."""

    def __init__(self, kubeconfig: str, namespace: str):
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=kubeconfig)
        self.custom, self.core, self.ns = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client), namespace
        self.sanitize = api_client.sanitize_for_serialization

    def get(self, plural: str, name: str, group: str = "kubevirt.io", version: str = "v1") -> dict | None:
        from kubernetes.client.exceptions import ApiException
        try:
            return self.custom.get_namespaced_custom_object(group, version, self.ns, plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create(self, plural: str, body: dict, group: str = "kubevirt.io", version: str = "v1") -> dict:
        return self.custom.create_namespaced_custom_object(group, version, self.ns, plural, body)

    def claim_phase(self, name: str) -> str | None:
        return (self.sanitize(self.core.read_namespaced_persistent_volume_claim(name, self.ns)).get("status")
                or {}).get("phase")

    def vmi_phase(self, name: str) -> str | None:
        return ((self.get("virtualmachineinstances", name) or {}).get("status") or {}).get("phase")


def _ready_seconds(snapshot: dict) -> float | None:
    ready = next((c for c in snapshot["status"].get("conditions") or [] if c.get("type") == "Ready"), None)
    if not ready or not ready.get("lastTransitionTime"):
        return None
    return parse_time(ready["lastTransitionTime"]) - parse_time(snapshot["metadata"]["creationTimestamp"])


def snapshot_sample(api: Api, vm: str, name: str) -> tuple[dict, dict]:
    """One snapshot create -> readyToUse; (figures, the snapshot)."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualMachineSnapshot", "metadata": {"name": name},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}}
    t0 = time.monotonic()
    api.create("virtualmachinesnapshots", body, GROUP, VERSION)

    def ready():
        snap = api.get("virtualmachinesnapshots", name, GROUP, VERSION)
        status = (snap or {}).get("status") or {}
        if status.get("phase") == "Failed":
            raise RuntimeError(f"snapshot {name} failed: {status.get('error')}")
        return snap if status.get("readyToUse") is True else None

    snap = wait_for(ready, COPY_TIMEOUT, f"snapshot {name} readyToUse", POLL)
    return {"total_s": time.monotonic() - t0, "ready_s": _ready_seconds(snap)}, snap


def restore_sample(api: Api, snapshot: str, name: str, target: str) -> dict:
    """One restore to the new VM ``target`` -> complete -> started -> VMI Running; the figures."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualMachineRestore", "metadata": {"name": name},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
                     "virtualMachineSnapshotName": snapshot}}
    t0 = time.monotonic()
    api.create("virtualmachinerestores", body, GROUP, VERSION)
    wait_for(lambda: ((api.get("virtualmachinerestores", name, GROUP, VERSION) or {}).get("status") or {})
             .get("complete") is True, COPY_TIMEOUT, f"restore {name} complete", POLL)
    t1 = time.monotonic()
    api.custom.patch_namespaced_custom_object("kubevirt.io", "v1", api.ns, "virtualmachines", target,
                                              {"spec": {"runStrategy": "Always"}})
    wait_for(lambda: api.vmi_phase(target) == "Running", BOOT_TIMEOUT, f"VMI {target} Running", POLL)
    return {"total_s": time.monotonic() - t0, "complete_s": t1 - t0}


def run_api(args, guest) -> dict:
    """The API part (module docstring): {"snapshot", "restore", "indications", "fill_s", "load"}."""
    from guest.demo_guest import apply_demo_guest_import
    from services.virtctl.installation import load_layout
    from shared.images import ImageStore
    from shared.natsserver import pick_free_port

    state = Path(tempfile.mkdtemp(prefix="kvsb-api-", dir="/var/tmp"))
    state.chmod(0o755)
    namespace, vm, claim = f"b9-{secrets.token_hex(3)}", "b9-vm", "b9-data"
    try:
        port = pick_free_port()
        virtctl("up", "--state-dir", str(state), "--api-port", str(port), "--node-name", f"b9-{port}")
        layout = load_layout(state)
        apply_demo_guest_import(ImageStore(layout.images_dir), guest)
        api = Api(str(layout.kubeconfig), namespace)
        api.core.create_namespaced_persistent_volume_claim(namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{args.volume_mib}Mi"}}}})
        wait_for(lambda: api.claim_phase(claim) == "Bound", 120, f"claim {claim} Bound")
        fill_s = apply_volume(apply_fill_file(state / "fill.raw", args.volume_mib),
                              state / "pvcs" / namespace / claim / "disk.img", existing=True)
        (state / "fill.raw").unlink()
        api.create("virtualmachines", vm_manifest(vm, claim))
        wait_for(lambda: api.vmi_phase(vm) == "Running", BOOT_TIMEOUT, f"VMI {vm} Running", 0.5)
        wait_for(lambda: any(c.get("type") == "AgentConnected" and c.get("status") == "True"
                             for c in (api.get("virtualmachineinstances", vm)["status"].get("conditions") or [])),
                 BOOT_TIMEOUT, f"{vm}'s guest agent connected", 0.5)
        meter = LoadMeter().start()
        snapshots, restores, indications = [], [], []
        for i in range(args.count + 1):
            sample, snap = snapshot_sample(api, vm, f"b9-snap-{i}")
            indications = snap["status"].get("indications") or []
            if args.verbose:
                print(f"  api snapshot #{i}: {sample} {indications}")
            if i:
                snapshots.append(sample)
        for i in range(args.count + 1):
            target = f"b9-copy-{i}"
            sample = restore_sample(api, "b9-snap-0", f"b9-restore-{i}", target)
            if args.verbose:
                print(f"  api restore #{i}: {sample}")
            if i:
                restores.append(sample)
            api.custom.delete_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", target)
            wait_for(lambda t=target: api.vmi_phase(t) is None, 120, f"{target} gone", 0.5)
        return {"snapshot": {"samples": snapshots, "summary": summarize(snapshots, ("total_s", "ready_s"))},
                "restore": {"samples": restores, "summary": summarize(restores, ("total_s", "complete_s"))},
                "indications": indications, "fill_s": round(fill_s, 2), "load": meter.stop()}
    finally:
        try:
            virtctl("down", "--state-dir", str(state), "--wipe")
        finally:
            shutil.rmtree(state, ignore_errors=True)
