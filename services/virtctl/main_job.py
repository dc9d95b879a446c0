"""The steps of README's main job after ``virtctl up`` (``scripts/main-job.sh`` runs this module).

Owns: putting the demo guest into the installation's image store (built from Debian packages
by :mod:`guest.demo_guest`, cached under ``<state>/guest-build``; imported only when the store
does not already hold this very build), applying the demo manifest (``kubectl apply`` when
kubectl is installed, else a create through virt-api), waiting until the VM's
``status.printableStatus`` is ``Running`` (one readable line and a pointer to the logs when it
is not within the timeout), and showing ``kubectl get vm,vmi`` and the guest's first console
lines (read from the console log the domain of the VMI's node's handler writes,
``<handler state>/vmis/<uid>/console.log``; :func:`compute_handler_place` says where that
handler keeps its state and log, for a one-machine installation, its ``--nodes``, or ``--hosts``).

Usage: ``python -m services.virtctl.main_job --state-dir DIR [--manifest examples/vm-demo.yaml]``.
Exit code 0 when the VM runs, 1 with ``main-job: error: ...`` otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.virtctl.client import ApiClient, compute_error, resource_path
from services.virtctl.extra_nodes import ExtraNode, compute_running_nodes
from services.virtctl.hosts import HostsRecord, handler_dir, load_hosts_record
from services.virtctl.installation import Layout, load_layout, log_path
from shared import errors
from shared.api.vocabulary import ConditionStatus, PrintableStatus

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = ROOT / "examples" / "vm-demo.yaml"
IMPORT_STAMP = "demo-guest.imported"
PROMPT = re.compile(rb"\[root@[\w.-]+ [^\]]*\]# ")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class MainJobError(RuntimeError):
    """A step failed; the message is the one line the user sees."""


def say(message: str) -> None:
    print(message, flush=True)


# -- the demo guest image --------------------------------------------------------------------
def apply_demo_image(layout: Layout) -> list[str]:
    """Build (cached) and import the demo guest into ``<state>/images``; returns the refs
    imported now (empty when the store already holds this build: nothing changes)."""
    from guest.demo_guest import GuestBuildError, apply_demo_guest_build, apply_demo_guest_import
    from shared.images import ImageStore

    started = time.monotonic()
    try:
        guest = apply_demo_guest_build(layout.state_dir, log=lambda m: say(f"  {m}"))
    except GuestBuildError as err:
        raise MainJobError(f"building the demo guest failed: {err}") from None
    store = ImageStore(layout.images_dir)
    stamp = layout.images_dir / IMPORT_STAMP
    source = json.dumps({"disk": str(guest.disk), "kernel": str(guest.kernel), "initramfs": str(guest.initramfs),
                         "size": guest.disk.stat().st_size, "mtime": guest.disk.stat().st_mtime})
    from guest.demo_guest import DEMO_DISK_REF, DEMO_KERNEL_REF
    if stamp.exists() and stamp.read_text() == source and store.is_present(DEMO_DISK_REF) \
            and store.is_present(DEMO_KERNEL_REF):
        say(f"demo guest image: {DEMO_DISK_REF} already in {layout.images_dir} (unchanged)")
        return []
    refs = apply_demo_guest_import(store, guest)
    stamp.write_text(source)
    say(f"demo guest image: imported {', '.join(refs)} into {layout.images_dir} "
        f"({time.monotonic() - started:.0f} s)")
    return refs


# -- the manifest ----------------------------------------------------------------------------
def _kubectl(layout: Layout) -> list[str] | None:
    binary = shutil.which("kubectl")
    return [binary, "--kubeconfig", str(layout.kubeconfig)] if binary else None


def apply_manifest(layout: Layout, manifest: Path) -> dict[str, Any]:
    """Apply ``manifest`` (one VirtualMachine); returns the manifest object. With kubectl:
    ``kubectl apply`` (prints ``... unchanged`` on a second run); without: create unless it exists."""
    doc = yaml.safe_load(manifest.read_text())
    kubectl = _kubectl(layout)
    if kubectl is not None:
        say(f"+ kubectl --kubeconfig {layout.kubeconfig} apply -f {manifest}")
        result = subprocess.run([*kubectl, "apply", "-f", str(manifest)], check=False, capture_output=True,
                                text=True, timeout=60)
        if result.returncode != 0:
            raise MainJobError(f"kubectl apply -f {manifest} failed: {result.stderr.strip()}")
        say(result.stdout.rstrip())
        return doc
    asyncio.run(_create_if_missing(layout, doc))
    return doc


async def _create_if_missing(layout: Layout, doc: dict[str, Any]) -> None:
    async with ApiClient.from_kubeconfig(layout.kubeconfig) as api:
        namespace = (doc.get("metadata") or {}).get("namespace") or api.namespace
        name = doc["metadata"]["name"]
        path = resource_path("kubevirt.io", "v1", "virtualmachines", namespace)
        try:
            await api.get(f"{path}/{name}")
            say(f"virtualmachine.kubevirt.io/{name} unchanged (exists)")
        except errors.NotFound:
            await api.post(path, doc)
            say(f"virtualmachine.kubevirt.io/{name} created")


# -- waiting ---------------------------------------------------------------------------------
def compute_failure_hint(vm: dict[str, Any] | None, vmi: dict[str, Any] | None) -> str:
    """The most telling message on the VM/VMI (a False condition's reason and message)."""
    for obj in (vmi, vm):
        for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
            if cond.get("status") == ConditionStatus.FALSE and cond.get("message"):
                return f"{cond.get('type')}: {cond.get('reason', '')} {cond['message']}".strip()
    return ""


@dataclass(frozen=True)
class HandlerPlace:
    """Where the virt-handler of ``node`` keeps its state (``state_dir``: ``vmis/<uid>/`` per
    guest) and writes its ``log``."""

    node: str
    state_dir: Path
    log: Path


def compute_handler_place(layout: Layout, hosts: HostsRecord | None, extra_nodes: list[ExtraNode],
                          node: str) -> HandlerPlace | None:
    """The handler of ``node`` (a VMI's ``status.nodeName``) in this installation: host ``node``
    of a hosts installation (``<state>/hosts/<node>/virt-handler``, log
    ``virt-handler-<node>.log``), an extra node of ``up --nodes``
    (``<state>/nodes/<node>/virt-handler``), or the one-machine installation's own node
    (``<state>/virt-handler``, log ``virt-handler.log``). None when the installation runs no such
    node."""
    if hosts is not None:
        if node not in {host.name for host in hosts.plan.hosts}:
            return None
        return HandlerPlace(node, handler_dir(layout, node), log_path(layout, f"virt-handler-{node}"))
    for extra in extra_nodes:
        if extra.name == node:
            return HandlerPlace(node, extra.handler_dir(layout), log_path(layout, f"virt-handler-{node}"))
    if node == layout.node_name:
        return HandlerPlace(node, layout.handler_dir, log_path(layout, "virt-handler"))
    return None


def compute_handler_logs(layout: Layout, hosts: HostsRecord | None, extra_nodes: list[ExtraNode]) -> list[Path]:
    """Every handler log of the installation (where to look before a VMI has a node)."""
    if hosts is not None:
        return [log_path(layout, f"virt-handler-{host.name}") for host in hosts.plan.hosts]
    return [log_path(layout, "virt-handler"), *(log_path(layout, f"virt-handler-{n.name}") for n in extra_nodes)]


def compute_timeout_message(name: str, status: str, timeout: float, hint: str, vmi: dict[str, Any] | None,
                            place: HandlerPlace | None, logs: list[Path]) -> str:
    """The one line when VM ``name`` (last ``status``, a :func:`compute_failure_hint` ``hint``)
    is not Running with its files on its node after ``timeout`` s; ``place``: the handler of
    ``vmi``'s node (None: no node, or one this installation does not run); ``logs``: every
    handler log (named when no node's is known)."""
    node = ((vmi or {}).get("status") or {}).get("nodeName")
    where = f"see {place.log if place else ', '.join(str(log) for log in logs)}"
    if status != PrintableStatus.RUNNING:
        return f"VM {name} is {status}, not Running, after {timeout:.0f} s" + (f" ({hint})" if hint else "") + \
            f"; {where}"
    if place is None:
        return (f"VM {name} is Running on node {node or '(none)'}, which this installation does not run, after "
                f"{timeout:.0f} s; {where}")
    return (f"VM {name} is Running but node {node}'s virt-handler has no files for it in {place.state_dir} after "
            f"{timeout:.0f} s (a VMI left Running by 'virtctl down' that its handler has not failed yet); {where}")


def _handler_place(layout: Layout, vmi: dict[str, Any] | None) -> HandlerPlace | None:
    node = ((vmi or {}).get("status") or {}).get("nodeName")
    if not node:
        return None
    return compute_handler_place(layout, load_hosts_record(layout), compute_running_nodes(layout), node)


async def wait_running(layout: Layout, namespace: str | None, name: str,
                       timeout: float) -> tuple[dict[str, Any], HandlerPlace]:
    """Poll until VM ``name`` shows ``printableStatus: Running`` and its VMI's node's handler has
    its files; returns the VMI and that handler's place. Raises MainJobError naming the last status, the likely reason
    and the handler's log (:func:`compute_timeout_message`)."""
    deadline = time.monotonic() + timeout
    status, vm, vmi = "", None, None
    async with ApiClient.from_kubeconfig(layout.kubeconfig) as api:
        ns = namespace or api.namespace
        while True:
            try:
                vm = await api.get(resource_path("kubevirt.io", "v1", "virtualmachines", ns, name))
                vmi = await api.get(resource_path("kubevirt.io", "v1", "virtualmachineinstances", ns, name))
            except errors.NotFound:
                vmi = None
            except errors.ApiError as err:
                raise MainJobError(f"virt-api: {err}") from None
            new_status = ((vm or {}).get("status") or {}).get("printableStatus") or "(no status yet)"
            if new_status != status:
                status = new_status
                say(f"  VM {name}: {status}")
            # a VMI left Running in the store by 'virtctl down' has no files on its node any
            # more: wait for the handler to fail it and for its successor
            place = _handler_place(layout, vmi)
            if status == PrintableStatus.RUNNING and vmi is not None and place is not None \
                    and console_log(place, vmi).parent.is_dir():
                return vmi, place
            if time.monotonic() > deadline:
                raise MainJobError(compute_timeout_message(
                    name, status, timeout, compute_failure_hint(vm, vmi), vmi, place,
                    compute_handler_logs(layout, load_hosts_record(layout), compute_running_nodes(layout))))
            await asyncio.sleep(1.0)


def console_log(place: HandlerPlace, vmi: dict[str, Any]) -> Path:
    """Where the domain of ``place``'s handler logs this VMI's serial console."""
    return place.state_dir / "vmis" / vmi["metadata"]["uid"] / "console.log"


def wait_console(path: Path, timeout: float) -> bytes:
    """The console log once it shows a shell prompt (or whatever it has after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        if PROMPT.search(data):
            break
        time.sleep(0.5)
    return data


def compute_console_lines(data: bytes, limit: int) -> list[str]:
    """The first non-empty lines of console output without control sequences: at most ``limit``,
    up to and including the first shell prompt."""
    text = ANSI.sub("", data.decode(errors="replace")).replace("\r", "")
    lines = []
    for line in text.split("\n"):
        if line.strip():
            lines.append(line)
            if len(lines) >= limit or PROMPT.search(line.encode()):
                break
    return lines


# -- showing ---------------------------------------------------------------------------------
def print_tables(layout: Layout) -> None:
    """``kubectl get vm,vmi`` (kubectl when installed, else the same Table from virt-api)."""
    kubectl = _kubectl(layout)
    say("")
    say(f"+ kubectl --kubeconfig {layout.kubeconfig} get vm,vmi")
    if kubectl is not None:
        result = subprocess.run([*kubectl, "get", "vm,vmi"], check=False, capture_output=True, text=True, timeout=60)
        say((result.stdout or result.stderr).rstrip())
        return
    asyncio.run(_print_tables_via_api(layout))


async def _print_tables_via_api(layout: Layout) -> None:
    async with ApiClient.from_kubeconfig(layout.kubeconfig) as api:
        for plural, kind in (("virtualmachines", "virtualmachine"), ("virtualmachineinstances",
                                                                     "virtualmachineinstance")):
            path = resource_path("kubevirt.io", "v1", plural, api.namespace)
            async with api._session.get(path, headers={"Accept": TABLE}) as resp:  # type: ignore[union-attr]
                if resp.status >= 400:
                    raise compute_error(resp.status, await resp.read())
                table = await resp.json()
            columns = [c["name"].upper() for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
            rows = [[str(v) for v, c in zip(r["cells"], table["columnDefinitions"]) if c.get("priority", 0) == 0]
                    for r in table["rows"]]
            rows = [[f"{kind}.kubevirt.io/{r[0]}", *r[1:]] for r in rows]
            widths = [max(len(x) for x in col) for col in zip(columns, *rows)]
            for line in [columns, *rows]:
                say("   ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
            say("")


def run(state_dir: Path, manifest: Path, timeout: float, console_lines: int) -> None:
    """The whole sequence (see module docstring). Raises MainJobError."""
    layout = load_layout(state_dir)
    say("")
    say("== demo guest image")
    apply_demo_image(layout)
    say("")
    say("== the demo VM")
    doc = apply_manifest(layout, manifest)
    name = doc["metadata"]["name"]
    namespace = (doc.get("metadata") or {}).get("namespace")
    vmi, place = asyncio.run(wait_running(layout, namespace, name, timeout))
    print_tables(layout)
    path = console_log(place, vmi)
    data = wait_console(path, timeout=120)
    say("")
    say(f"== first console lines of {name} ({path})")
    for line in compute_console_lines(data, console_lines):
        say(f"  | {line}")
    if not PROMPT.search(data):
        say(f"  (no shell prompt yet; the guest may still be booting under TCG: tail -f {path})")
    virtctl = ROOT / ".venv" / "bin" / "virtctl"
    say("")
    say(f"VM {name} is Running; the installation keeps running.")
    say(f"  console:  {virtctl} --kubeconfig {layout.kubeconfig} console {name}    (Ctrl-] leaves)")
    say(f"  kubectl:  export KUBECONFIG={layout.kubeconfig}; kubectl get vm,vmi")
    migrate = f"{virtctl} --kubeconfig {layout.kubeconfig} migrate {name} --wait"
    if load_hosts_record(layout) is None:  # hosts are nodes already; one machine needs a second node
        migrate = f"{virtctl} up --nodes 2 --state-dir {layout.state_dir}; {migrate}"
    say(f"  migrate:  {migrate}")
    say(f"  stop:     {virtctl} down --state-dir {layout.state_dir}    (--wipe also deletes the data)")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m services.virtctl.main_job", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for Running")
    parser.add_argument("--console-lines", type=int, default=12)
    args = parser.parse_args(argv)
    try:
        run(args.state_dir, args.manifest, args.timeout, args.console_lines)
    except (MainJobError, errors.ApiError, OSError) as err:
        print(f"main-job: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
