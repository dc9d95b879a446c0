"""B6, the API part of bench/migration_bench.py: migrations through virt-api on ``virtctl up --nodes 2``.

Per migration a ``VirtualMachineInstanceMigration`` is created through virt-api and polled until
final; the figures come from the objects (phase transition stamps, ``migrationState.progress``
written by the source virt-handler from libvirt's job statistics), see :func:`migration_sample`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.migration_bench import (BOOT_TIMEOUT, FILLED, MIGRATION_TIMEOUT, READY, ROOT, LoadMeter, _fmt, log_has,
                                   parse_time, summarize, user_data, wait_for)
from guest.demo_guest import apply_demo_guest_import


# -- API: VirtualMachineInstanceMigrations through virt-api ---------------------------------------
def virtctl(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "services.virtctl.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"virtctl {' '.join(args)} -> {proc.returncode}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def vm_manifest(name: str, user_data_text: str) -> dict:
    """examples/vm-demo.yaml renamed, with a masquerade pod interface and the bench's cloud-init script."""
    import yaml

    vm = yaml.safe_load((ROOT / "examples" / "vm-demo.yaml").read_text())
    vm["metadata"] = {"name": name, "labels": {"app": name}}
    template = vm["spec"]["template"]
    template["metadata"]["labels"] = {"kubevirt.io/vm": name}
    if not template["spec"]["domain"]["devices"].get("interfaces"):  # bridge (the default) is not migratable
        template["spec"]["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}}]
        template["spec"]["networks"] = [{"name": "default", "pod": {}}]
    for volume in template["spec"]["volumes"]:
        if "cloudInitNoCloud" in volume:
            volume["cloudInitNoCloud"] = {"userData": user_data_text}
    return vm


class JobCompletedListener:
    """QEMU's figures of each migration as libvirt reports them to an observer: the
    ``JOB_COMPLETED`` event the source daemon emits with the job's statistics (``time_elapsed``,
    ``downtime``, ``memory_processed``/``disk_processed`` bytes, ``memory_iteration``;
    feasibility-on-this-machine.md §2). Listening takes nothing from the handlers (reading a
    destination's completed-job statistics without KEEP_COMPLETED would remove them)."""

    def __init__(self, uris: list[str]):
        import threading

        import libvirt

        libvirt.virEventRegisterDefaultImpl()
        self.events: list[tuple[str, dict]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, args=(libvirt,), daemon=True)
        self._thread.start()
        self.conns = [libvirt.open(uri) for uri in uris]
        for conn in self.conns:
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_event, None)

    def _loop(self, libvirt) -> None:
        while not self._stop:
            libvirt.virEventRunDefaultImpl()

    def _on_event(self, conn, dom, params, opaque) -> None:
        self.events.append((dom.name(), dict(params)))

    def take(self, domain: str, timeout: float = 15.0) -> dict | None:
        """The oldest unread statistics of ``domain`` (waits up to ``timeout`` s; None if none came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, (name, stats) in enumerate(self.events):
                if name == domain:
                    del self.events[index]
                    return stats
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._stop = True
        for conn in self.conns:
            conn.close()


def migration_sample(vmim: dict, vmi: dict | None, requested_at: float, seen_at: float,
                     qemu: dict | None) -> dict:
    """Figures of one final VMIM: ``total_s`` = client's create request -> the object's Succeeded
    stamp (same host clock), ``pending_to_succeeded_s`` (object stamps only), ``wall_s`` (client
    saw it final); QEMU's ``qemu_ms``/``downtime_ms``/``data_mib``/``iterations`` from the
    JOB_COMPLETED statistics ``qemu`` and ``overhead_s`` = total - QEMU time; and what the product
    reports in ``migrationState.progress`` (``reported_downtime_ms``, ``reported_elapsed_ms``,
    ``reported_data_mib``; the VMIM's copy, else the VMI's when it is the same migration)."""
    status = vmim.get("status") or {}
    stamps = {t.get("phase"): t.get("phaseTransitionTimestamp") for t in status.get("phaseTransitionTimestamps") or []}
    state = status.get("migrationState") or {}
    vmi_state = ((vmi or {}).get("status") or {}).get("migrationState") or {}
    progress = state.get("progress") or (vmi_state.get("progress")
                                          if vmi_state.get("migrationUid") == vmim["metadata"]["uid"] else None) or {}
    done = stamps.get("Succeeded") or stamps.get("Failed")
    total = parse_time(done) - requested_at if done else None
    qemu = qemu or {}
    qemu_ms = qemu.get("time_elapsed")
    data = qemu.get("memory_processed")
    return {"phase": status.get("phase"), "total_s": total,
            "pending_to_succeeded_s": parse_time(done) - parse_time(stamps["Pending"])
            if done and stamps.get("Pending") else None,
            "wall_s": seen_at - requested_at, "qemu_ms": qemu_ms, "downtime_ms": qemu.get("downtime"),
            "data_mib": (data + qemu.get("disk_processed", 0)) / 2**20 if data is not None else None,
            "iterations": qemu.get("memory_iteration"),
            "overhead_s": total - qemu_ms / 1000 if total is not None and qemu_ms is not None else None,
            "reported_downtime_ms": progress.get("downtimeMs"), "reported_elapsed_ms": progress.get("elapsedMs"),
            "reported_data_mib": progress["dataProcessedBytes"] / 2**20 if progress.get("dataProcessedBytes")
            else None,
            "direction": f"{state.get('sourceNode')}->{state.get('targetNode')}",
            "phases_s": {phase: round(parse_time(stamp) - requested_at, 3) for phase, stamp in stamps.items() if stamp}}


class ApiStack:
    """An embedded installation with two nodes in a private state dir, and its API client."""

    def __init__(self, guest):
        from kubernetes import client, config

        from services.virtctl.installation import load_layout
        from shared.images import ImageStore
        from shared.natsserver import pick_free_port

        self.state = Path(tempfile.mkdtemp(prefix="kvmb-api-", dir="/var/tmp"))
        self.state.chmod(0o755)
        self.namespace = f"b6-{secrets.token_hex(3)}"
        virtctl("up", "--state-dir", str(self.state), "--api-port", str(pick_free_port()), "--nodes", "2")
        layout = load_layout(self.state)
        apply_demo_guest_import(ImageStore(layout.images_dir), guest)
        self.api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(layout.kubeconfig)))
        from services.virtctl.extra_nodes import load_extra_nodes

        self.uris = [layout.libvirt_uri, *(n.uri(layout) for n in load_extra_nodes(layout)[1])]

    def get(self, plural: str, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object("kubevirt.io", "v1", self.namespace, plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def create(self, plural: str, body: dict) -> dict:
        return self.api.create_namespaced_custom_object("kubevirt.io", "v1", self.namespace, plural, body)

    def delete(self, plural: str, name: str) -> None:
        self.api.delete_namespaced_custom_object("kubevirt.io", "v1", self.namespace, plural, name)

    def console_log(self, uid: str) -> Path | None:
        return next(iter(self.state.glob(f"**/vmis/{uid}/console.log")), None)

    def close(self) -> None:
        try:
            virtctl("down", "--state-dir", str(self.state), "--wipe")
        finally:
            shutil.rmtree(self.state, ignore_errors=True)


def run_api(args, guest, variants: list[str]) -> dict:
    """The API part (see the module docstring); returns {variant: {samples, summary}, load}."""
    stack = ApiStack(guest)
    results: dict = {}
    listener = JobCompletedListener(stack.uris)
    try:
        if args.max_downtime_ms:  # the installation's KubeVirt object (virtctl up makes one)
            (kv,) = stack.api.list_cluster_custom_object("kubevirt.io", "v1", "kubevirts")["items"]
            stack.api.patch_namespaced_custom_object(
                "kubevirt.io", "v1", kv["metadata"]["namespace"], "kubevirts", kv["metadata"]["name"],
                {"spec": {"configuration": {"migrations": {"maxDowntimeMs": args.max_downtime_ms}}}})
        meter = LoadMeter().start()
        for variant in variants:
            name = f"b6-{variant}"
            stack.create("virtualmachines", vm_manifest(name, user_data(args, variant)))

            def running():
                vmi = stack.get("virtualmachineinstances", name)
                return vmi if vmi and (vmi.get("status") or {}).get("phase") == "Running" else None

            vmi = wait_for(running, BOOT_TIMEOUT, f"VMI {name} Running", 0.5)
            uid = vmi["metadata"]["uid"]
            try:
                wait_for(lambda: (lambda log: log is not None and log_has(log, READY, FILLED))(stack.console_log(uid)),
                         BOOT_TIMEOUT, f"{variant} guest ready and filled", 0.5)
            except TimeoutError as err:
                log = stack.console_log(uid)
                tail = log.read_text(errors="replace")[-1500:] if log else "(no console log)"
                raise TimeoutError(f"{err} (node {vmi['status'].get('nodeName')}, {log}):\n{tail}") from None
            samples, failures = [], []
            i = 0
            while len(samples) < args.count:  # the first migration (i == 0) is the warm-up
                requested_at = time.time()
                vmim = stack.create("virtualmachineinstancemigrations",
                                    {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                                     "metadata": {"generateName": f"{name}-"}, "spec": {"vmiName": name}})

                def final():
                    current = stack.get("virtualmachineinstancemigrations", vmim["metadata"]["name"])
                    return current if (current or {}).get("status", {}).get("phase") in ("Succeeded", "Failed") \
                        else None

                done = wait_for(final, MIGRATION_TIMEOUT, f"VMIM {vmim['metadata']['name']} final", 0.1)
                seen_at = time.time()
                qemu = listener.take(f"{stack.namespace}_{name}")
                sample = migration_sample(done, stack.get("virtualmachineinstances", name), requested_at, seen_at, qemu)
                if args.verbose:
                    print(f"  api {variant} #{i}{' (warm-up)' if i == 0 else ''}: {_fmt(sample)}")
                if sample["phase"] != "Succeeded":  # counted and reported, not measured; the guest stays
                    reason = ((done.get("status") or {}).get("migrationState") or {}).get("failureReason")
                    failures.append({"name": vmim["metadata"]["name"], "reason": reason})
                    print(f"  api {variant}: {vmim['metadata']['name']} Failed: {reason}")
                    if len(failures) > args.count:
                        raise RuntimeError(f"more failed than measured migrations: {json.dumps(failures)}")
                elif i:
                    samples.append(sample)
                i += 1
            results[variant] = {"samples": samples, "failures": failures,
                                "summary": summarize(samples, ("total_s", "pending_to_succeeded_s", "wall_s",
                                                               "qemu_ms", "downtime_ms", "data_mib", "iterations",
                                                               "overhead_s", "reported_downtime_ms",
                                                               "reported_elapsed_ms", "reported_data_mib"))}
            stack.delete("virtualmachines", name)
            wait_for(lambda: stack.get("virtualmachineinstances", name) is None, 120, f"VMI {name} gone", 0.5)
        results["load"] = meter.stop()
    finally:
        listener.close()
        stack.close()
    return results
