"""When VM churn has converged, and the final state the history checker reads (not a test module)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from churn import value_of
from cluster_processes import NS, VMIS, VMS
from history_check import FinalState, Guest, Instance


class GuestSource(Protocol):
    """What reads every node's guests (:class:`cluster_processes.Cluster`, ``hosts_installation.HostGuests``)."""

    async def guests(self) -> list[Guest]: ...


async def read_final_state(store, cluster: GuestSource) -> tuple[FinalState, list[str]]:
    """The VMs' values, the VMIs, the guests of ``cluster``; and what has not converged yet
    (empty when done)."""
    vms, _ = await store.list(VMS, NS)
    vmis, _ = await store.list(VMIS, NS)
    guests = await cluster.guests()
    pending = []
    running = {g.key for g in guests if g.active}
    vmi_by_name = {v["metadata"]["name"]: v for v in vmis}
    for vm in vms:
        name = vm["metadata"]["name"]
        status = vm.get("status") or {}
        if vm["metadata"].get("deletionTimestamp"):
            pending.append(f"{name} still being deleted")
        elif vm["spec"]["runStrategy"] == "Always":
            vmi = vmi_by_name.get(name)
            if status.get("printableStatus") != "Running" or vmi is None or name not in running \
                    or (vmi.get("status") or {}).get("phase") != "Running":
                pending.append(f"{name} not Running yet ({status.get('printableStatus')})")
        elif name in vmi_by_name or name in running or status.get("printableStatus") != "Stopped":
            pending.append(f"{name} not Stopped yet ({status.get('printableStatus')})")
    names = {vm["metadata"]["name"] for vm in vms}
    pending += [f"VMI {n} of a deleted VM" for n in vmi_by_name if n not in names]
    pending += [f"guest {g.key} on {g.node} of a deleted VM" for g in guests if g.active and g.key not in names]
    final = FinalState(values={vm["metadata"]["name"]: value_of(vm) for vm in vms if not
                               vm["metadata"].get("deletionTimestamp")},
                       instances=[Instance(v["metadata"]["name"], v["metadata"]["uid"],
                                           (v.get("status") or {}).get("phase") or "") for v in vmis],
                       guests=guests)
    return final, pending


async def wait_converged(store, cluster: GuestSource, timeout: float) -> FinalState:
    """The final state once nothing is pending; AssertionError naming what is after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        final, pending = await read_final_state(store, cluster)
        if not pending:
            return final
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged after {timeout:.0f}s: {pending}")
        await asyncio.sleep(0.5)
