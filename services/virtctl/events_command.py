"""``virtctl events <vm>``: the Events of a VirtualMachine and its VMI, oldest first.

Reads ``/api/v1/namespaces/<ns>/events`` from virt-api with the field selector
``involvedObject.name=<vm>`` (a VM's VMI has the VM's name, so both kinds come back) and prints
kubectl's event columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE. ``--kind vm|vmi`` narrows to
one kind; ``-o json`` prints the EventList as virt-api returns it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import click

from services.virtctl.client import ApiClient, resource_path
from services.virtctl.main import cli, client_options, resolve_kubeconfig, selected_namespace
from shared.api.vocabulary import utc_now
from shared.human_duration import format_age_since

KINDS = {"vm": "VirtualMachine", "vmi": "VirtualMachineInstance"}


def compute_event_selector(name: str, kind: str | None) -> str:
    """The field selector of ``name``'s Events (optionally one kind: ``vm`` or ``vmi``)."""
    selector = f"involvedObject.name={name}"
    if kind:
        selector += f",involvedObject.kind={KINDS[kind]}"
    return selector


def compute_event_lines(events: list[dict[str, Any]], now: datetime) -> list[str]:
    """kubectl-style aligned lines (a header first) for ``events``, in the given order."""
    rows = [("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")]
    for ev in events:
        last = ev.get("lastTimestamp") or (ev.get("metadata") or {}).get("creationTimestamp") or ""
        seen = format_age_since(last, now)
        if int(ev.get("count") or 1) > 1:
            seen += f" (x{ev['count']})"
        inv = ev.get("involvedObject") or {}
        rows.append((seen, ev.get("type", ""), ev.get("reason", ""),
                     f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}", ev.get("message", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["   ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "   " + r[4] for r in rows]


async def _fetch(kubeconfig: Any, namespace: str | None, name: str, kind: str | None) -> dict[str, Any]:
    async with ApiClient.from_kubeconfig(kubeconfig) as api:
        ns = namespace or api.namespace
        return await api.get(resource_path("", "v1", "events", ns),
                             params={"fieldSelector": compute_event_selector(name, kind)})


@cli.command()
@client_options
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None, help="Only the VM's or the VMI's events.")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def events(ctx: click.Context, name: str, kind: str | None, output: str) -> None:
    """Show the Events of a VirtualMachine and its VMI, oldest first."""
    namespace = selected_namespace(ctx)
    result = asyncio.run(_fetch(resolve_kubeconfig(ctx), namespace, name, kind))
    if output == "json":
        click.echo(json.dumps(result, indent=2))
        return
    items = result.get("items") or []
    if not items:
        click.echo(f"No events found for {name}.")
        return
    for line in compute_event_lines(items, utc_now()):
        click.echo(line)
